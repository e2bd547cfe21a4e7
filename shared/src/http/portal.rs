//! The portal (DESIGN §12): a web page for requesters, approvers and admins that uses only the `/v1` API.
//!
//! Plain HTML, CSS and ES modules from `shared/portal/`, compiled into the binary (no build step, no Node),
//! served at `/` and `/portal/{file}` by `ticketbound-local` and by the API function on AWS (one origin, so
//! the page's `/v1` calls are same-origin and need no CORS). Every answer carries the security headers of
//! [`Portal::headers`]: a Content-Security-Policy without inline script or style, `nosniff`, no referrer,
//! and on AWS `Strict-Transport-Security`.
//!
//! Caching: the page (`/`) is `no-cache` and names every file it loads with the version of this build
//! (`/portal/app.js?v=<hash of every file>`, and so does each module's `import`), so a file asked for under
//! the current version is `immutable` for a year and a new build is a new URL: the browser never runs a stale
//! script after an upgrade, and never asks again while nothing changed. A file asked for without (or with
//! another) version is `no-cache` with a strong `ETag`, answering 304 while unchanged. Every file is sent
//! gzip-compressed to a client that accepts it, compressed once per process on first request.

use std::io::Write;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    HeaderValue, IF_NONE_MATCH, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, VARY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
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

/// Every file under `/portal/`. All but `admin.js` and `access.js` (imported when first opened) are loaded by the
/// first page; together with [`INDEX`] they are at most the first page's weight, which a test keeps under
/// 100 KB.
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
    /// This build's version of the page: a hash over every file, named in every URL the page loads.
    version: String,
    files: Vec<Served>,
}

/// One file as served: its body with the page's own URLs versioned, its tag, and its gzip form once asked for.
struct Served {
    name: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    etag: HeaderValue,
    gzip_etag: HeaderValue,
    gzip: OnceLock<Vec<u8>>,
}

impl Served {
    fn new(asset: &Asset, version: &str) -> Self {
        let body = versioned(asset.body, version).into_bytes();
        let digest = hex::encode(&Sha256::digest(&body)[..16]);
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{digest}{suffix}\"")).expect("hex is ASCII")
        };
        Self {
            name: asset.name,
            content_type: asset.content_type,
            etag: tag(""),
            // A different representation (RFC 9110 §8.8.3): its own strong tag.
            gzip_etag: tag("-gzip"),
            body,
            gzip: OnceLock::new(),
        }
    }

    fn gzipped(&self) -> &[u8] {
        self.gzip.get_or_init(|| gzip(&self.body))
    }
}

/// `body` with every reference to a portal file (`"/portal/app.js"` in the page, `"./api.js"` in a module's
/// `import`) carrying `?v=<version>`, so every module is loaded under one URL and cached under it.
fn versioned(body: &str, version: &str) -> String {
    let mut out = body.to_owned();
    for asset in ASSETS {
        for prefix in ["/portal/", "./"] {
            let plain = format!("\"{prefix}{}\"", asset.name);
            out = out.replace(&plain, &format!("\"{prefix}{}?v={version}\"", asset.name));
        }
    }
    out
}

/// `bytes` as a gzip member (RFC 1952) at the best compression: done once per file and process.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 3), Compression::best());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .expect("writing to memory cannot fail")
}

/// Whether `Accept-Encoding` accepts gzip (named without `q=0`, or through `*`).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
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
        let mut all = Sha256::new();
        for asset in std::iter::once(&INDEX).chain(ASSETS) {
            all.update(asset.name.as_bytes());
            all.update(asset.body.as_bytes());
        }
        let version = hex::encode(&all.finalize()[..8]);
        let files = std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|a| Served::new(a, &version))
            .collect();
        Self(Arc::new(Inner {
            config_json: config.to_string(),
            headers,
            version,
            files,
        }))
    }

    /// This build's version of the page, as the page's URLs name it (`?v=…`).
    pub fn version(&self) -> &str {
        &self.0.version
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

    /// `asset` to a request for it: gzip when accepted, 304 when the client's copy is current, cached for a
    /// year when asked for under this build's version (`current`) and revalidated every time otherwise.
    fn serve(&self, asset: &Asset, request: &HeaderMap, current: bool) -> Response {
        let file = self
            .0
            .files
            .iter()
            .find(|f| f.name == asset.name)
            .expect("every asset is served");
        let gzip = accepts_gzip(request);
        let etag = if gzip { &file.gzip_etag } else { &file.etag };
        let cache = HeaderValue::from_static(if current {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        });
        let vary = (VARY, HeaderValue::from_static("Accept-Encoding"));
        let fresh = request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| tag.trim() == etag || tag.trim() == "*");
        let response = if fresh {
            (
                StatusCode::NOT_MODIFIED,
                [(ETAG, etag.clone()), (CACHE_CONTROL, cache), vary],
            )
                .into_response()
        } else if gzip {
            let headers = [
                (CONTENT_TYPE, HeaderValue::from_static(file.content_type)),
                (CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                (ETAG, etag.clone()),
                (CACHE_CONTROL, cache),
                vary,
            ];
            (headers, file.gzipped().to_vec()).into_response()
        } else {
            let headers = [
                (CONTENT_TYPE, HeaderValue::from_static(file.content_type)),
                (ETAG, etag.clone()),
                (CACHE_CONTROL, cache),
                vary,
            ];
            (headers, file.body.clone()).into_response()
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
    // The page names this build's files, so it must be revalidated every time: never `immutable`.
    portal.serve(&INDEX, &request, false)
}

async fn file(
    State(portal): State<Portal>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
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
        Some(asset) => {
            let current = query
                .as_deref()
                .is_some_and(|q| q.split('&').any(|p| p == format!("v={}", portal.version())));
            portal.serve(asset, &request, current)
        }
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

    #[test]
    fn every_reference_to_a_portal_file_carries_the_version() {
        let page = versioned(INDEX.body, "v1");
        assert!(page.contains("src=\"/portal/app.js?v=v1\""), "{page}");
        assert!(page.contains("href=\"/portal/style.css?v=v1\""), "{page}");
        let app = versioned(include_str!("../../portal/app.js"), "v1");
        assert!(app.contains("from \"./api.js?v=v1\""), "{app}");
        assert!(!app.contains("from \"./api.js\""), "{app}");
    }

    #[test]
    fn gzip_is_accepted_unless_refused_with_q_zero() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&h)
        };
        assert!(accept("gzip, deflate, br"));
        assert!(accept("br;q=1.0, GZIP;q=0.5"));
        assert!(accept("*"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn a_gzipped_file_decompresses_to_the_served_bytes_and_is_much_smaller() {
        use std::io::Read;
        let portal = Portal::local(&RoleGroups::default());
        for file in &portal.0.files {
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(file.gzipped())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, file.body, "{}", file.name);
            if file.body.len() > 4096 {
                assert!(file.gzipped().len() * 2 < file.body.len(), "{}", file.name);
            }
        }
    }
}
