//! The portal (DESIGN §12): a web page for requesters, approvers and admins that uses only the `/v1` API.
//!
//! Plain HTML, CSS and ES modules from `shared/portal/`, compiled into the binary (no build step, no Node),
//! served at `/` and `/portal/{file}` by `ticketbound-local` and by the API function on AWS (one origin, so
//! the page's `/v1` calls are same-origin and need no CORS). Every answer carries the security headers of
//! [`Portal::headers`]: a Content-Security-Policy without inline script or style, `nosniff`, no referrer,
//! and on AWS `Strict-Transport-Security`. Assets carry a strong `ETag` (a hash of their bytes) and
//! `Cache-Control: no-cache`, so a browser revalidates with one cheap 304 and never runs a stale script after
//! an upgrade.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH,
    REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::config::OidcSettings;
use crate::domain::identity::RoleGroups;
use crate::service::ErrorKind;

/// The portal's routes, as `(method, path)`: served without the JWT authorizer (the page must load before
/// anyone signs in). The template is checked against this list.
pub const ROUTES: &[(&str, &str)] = &[("GET", "/"), ("GET", "/portal/{file}")];

/// The page's own configuration, fetched by the page at start.
pub const CONFIG_PATH: &str = "/portal/config.json";

/// One file of the page.
pub struct Asset {
    /// The name under `/portal/`; the page itself is served at `/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The page itself, served at `/`.
pub const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../portal/index.html"),
};

/// Every file under `/portal/`. All of them are loaded by the first page (there is nothing lazy to leave out),
/// so together with [`INDEX`] they are the first page's weight, which a test keeps under 100 KB.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../portal/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../portal/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../portal/api.js"),
    },
    Asset {
        name: "oidc.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../portal/oidc.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../portal/dom.js"),
    },
    Asset {
        name: "views.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../portal/views.js"),
    },
    Asset {
        name: "admin.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../portal/admin.js"),
    },
    Asset {
        name: "access.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../portal/access.js"),
    },
];

/// How the page finds out who is calling.
#[derive(Clone, Debug)]
pub enum SignIn {
    /// `ticketbound-local`: the page offers a "local only" picker and sends the trusted headers.
    LocalHeaders,
    /// AWS: OpenID Connect, authorization code with PKCE, against these settings.
    Oidc(OidcSettings),
    /// AWS without `OIDC_CLIENT_ID`: the page says how to configure sign-in.
    Unconfigured,
}

/// The portal as one deployment serves it.
#[derive(Clone)]
pub struct Portal(Arc<Inner>);

struct Inner {
    config_json: String,
    headers: HeaderMap,
    etags: Vec<(&'static str, HeaderValue)>,
}

impl Portal {
    /// The local server's portal: the identity picker, plain HTTP (no HSTS).
    pub fn local(roles: &RoleGroups) -> Self {
        Self::new(SignIn::LocalHeaders, roles, "email", "groups", false)
    }

    /// The API function's portal on AWS: OpenID Connect sign-in (when configured), HTTPS only.
    pub fn aws(
        oidc: Option<OidcSettings>,
        roles: &RoleGroups,
        email_claim: &str,
        groups_claim: &str,
    ) -> Self {
        let sign_in = oidc.map_or(SignIn::Unconfigured, SignIn::Oidc);
        Self::new(sign_in, roles, email_claim, groups_claim, true)
    }

    fn new(
        sign_in: SignIn,
        roles: &RoleGroups,
        email_claim: &str,
        groups_claim: &str,
        hsts: bool,
    ) -> Self {
        let mut config = serde_json::json!({
            "approver_group": roles.approver,
            "admin_group": roles.admin,
            "auditor_group": roles.auditor,
        });
        let (mut connect, mut form) = (vec!["'self'".to_owned()], vec!["'self'".to_owned()]);
        match &sign_in {
            SignIn::LocalHeaders => config["mode"] = "local".into(),
            SignIn::Unconfigured => config["mode"] = "unconfigured".into(),
            SignIn::Oidc(o) => {
                config["mode"] = "oidc".into();
                config["issuer"] = o.issuer.clone().into();
                config["client_id"] = o.client_id.clone().into();
                config["authorization_endpoint"] = o.authorization_endpoint.clone().into();
                config["token_endpoint"] = o.token_endpoint.clone().into();
                config["scopes"] = o.scopes.clone().into();
                config["email_claim"] = email_claim.into();
                config["groups_claim"] = groups_claim.into();
                connect.extend(origin_of(&o.token_endpoint));
                form.extend(origin_of(&o.authorization_endpoint));
            }
        }
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src {}; \
             form-action {}; frame-ancestors 'none'; base-uri 'none'",
            connect.join(" "),
            form.join(" ")
        );
        let mut headers = HeaderMap::new();
        let value = |v: &str| HeaderValue::from_str(v).expect("header values are ASCII");
        headers.insert(CONTENT_SECURITY_POLICY, value(&csp));
        headers.insert(X_CONTENT_TYPE_OPTIONS, value("nosniff"));
        headers.insert(REFERRER_POLICY, value("no-referrer"));
        if hsts {
            headers.insert(
                STRICT_TRANSPORT_SECURITY,
                value("max-age=63072000; includeSubDomains"),
            );
        }
        let etags = std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                (
                    a.name,
                    value(&format!("\"{}\"", hex::encode(&digest[..16]))),
                )
            })
            .collect();
        Self(Arc::new(Inner {
            config_json: config.to_string(),
            headers,
            etags,
        }))
    }

    /// The security headers every portal answer carries.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    fn secured(&self, mut response: Response) -> Response {
        for (name, value) in &self.0.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }

    fn serve(&self, asset: &Asset, request: &HeaderMap) -> Response {
        let etag = self
            .0
            .etags
            .iter()
            .find(|(name, _)| *name == asset.name)
            .map(|(_, etag)| etag.clone())
            .expect("every asset has an ETag");
        let cache = (CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let fresh = request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| tag.trim() == etag || tag.trim() == "*");
        let response = if fresh {
            (StatusCode::NOT_MODIFIED, [(ETAG, etag), cache]).into_response()
        } else {
            (
                [
                    (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
                    (ETAG, etag),
                    cache,
                ],
                asset.body,
            )
                .into_response()
        };
        self.secured(response)
    }
}

/// `https://host[:port]` of a URL (what CSP source lists name), or nothing for a URL that does not parse.
fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed.host_str()?;
    Some(parsed.origin().ascii_serialization())
}

/// The portal's routes, ready to merge into a router that serves `/v1` on the same origin.
pub fn routes(portal: Portal) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/portal/{file}", get(file))
        .with_state(portal)
}

async fn index(State(portal): State<Portal>, request: HeaderMap) -> Response {
    portal.serve(&INDEX, &request)
}

async fn file(
    State(portal): State<Portal>,
    Path(name): Path<String>,
    request: HeaderMap,
) -> Response {
    if format!("/portal/{name}") == CONFIG_PATH {
        let response = (
            [
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            portal.0.config_json.clone(),
        )
            .into_response();
        return portal.secured(response);
    }
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => portal.serve(asset, &request),
        None => portal.secured(
            ApiError::new(
                ErrorKind::NotFound,
                "no_such_file",
                "the portal has no such file; open the page at /",
            )
            .into_response(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csp_names_the_identity_provider_only_where_the_page_talks_to_it() {
        let oidc = OidcSettings {
            issuer: "https://cognito-idp.eu-west-1.amazonaws.com/pool".into(),
            client_id: "client-1".into(),
            authorization_endpoint: "https://acme.auth.example.com/oauth2/authorize".into(),
            token_endpoint: "https://tokens.example.com:8443/oauth2/token".into(),
            scopes: "openid email".into(),
        };
        let portal = Portal::aws(Some(oidc), &RoleGroups::default(), "email", "groups");
        let csp = portal.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' https://tokens.example.com:8443;"),
            "{csp}"
        );
        assert!(
            csp.contains("form-action 'self' https://acme.auth.example.com;"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(portal.headers().contains_key(STRICT_TRANSPORT_SECURITY));
    }

    #[test]
    fn the_local_portal_talks_only_to_itself_and_sets_no_hsts_over_plain_http() {
        let portal = Portal::local(&RoleGroups::default());
        let csp = portal.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self';") && csp.contains("form-action 'self';"),
            "{csp}"
        );
        assert!(!portal.headers().contains_key(STRICT_TRANSPORT_SECURITY));
        let config: serde_json::Value = serde_json::from_str(&portal.0.config_json).unwrap();
        assert_eq!(config["mode"], "local");
        assert_eq!(config["approver_group"], "ticketbound-approvers");
    }
}
