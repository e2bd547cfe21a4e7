//! The portal page through the routers: the local server at `/`, and the API function on Lambda (a real API
//! Gateway v2 event, no authorizer: the page loads before sign-in). Security headers on every answer, content
//! types, caching, the §5 error shape for unknown files, the page's configuration, and the page weight.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use ticketbound::config::OidcSettings;
use ticketbound::domain::identity::RoleGroups;
use ticketbound::http::portal::{ASSETS, INDEX, ROUTES};
use ticketbound::http::{AppState, IdentitySource, Portal, api_router_with_portal};
use ticketbound_tests::*;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

async fn get(router: &axum::Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder().uri(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

const LOCAL_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_secured(answer: &Answer, what: &str) {
    assert_eq!(
        header(answer, "content-security-policy"),
        LOCAL_CSP,
        "{what}"
    );
    assert_eq!(
        header(answer, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(header(answer, "referrer-policy"), "no-referrer", "{what}");
}

fn local() -> axum::Router {
    let (app, _store, _) = local_test_app();
    local_router(app)
}

fn oidc() -> OidcSettings {
    OidcSettings {
        issuer: "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc".into(),
        client_id: "portal-client".into(),
        authorization_endpoint: "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
            .into(),
        token_endpoint: "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/token".into(),
        scopes: "openid email profile".into(),
    }
}

fn lambda(oidc: Option<OidcSettings>) -> axum::Router {
    let (app, _store, _) = local_test_app();
    let roles = RoleGroups::default();
    let portal = Portal::aws(oidc, &roles, "email", "cognito:groups");
    api_router_with_portal(
        AppState {
            app,
            identity: IdentitySource::JwtClaims {
                email_claim: "email".into(),
                groups_claim: "cognito:groups".into(),
            },
            roles,
        },
        portal,
    )
}

#[tokio::test]
async fn the_local_server_serves_the_page_at_the_root_with_the_security_headers() {
    let router = local();

    let page = get(&router, "/", &[]).await;

    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_secured(&page, "/");
    let html = String::from_utf8(page.body).unwrap();
    let version = router_portal_version(&html);
    assert!(html.contains(&format!(
        "<script type=\"module\" src=\"/portal/app.js?v={version}\">"
    )));
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style: the CSP would block it"
    );
}

#[tokio::test]
async fn every_asset_has_its_content_type_the_headers_and_a_strong_etag_that_answers_304() {
    let router = local();
    for asset in ASSETS {
        let path = format!("/portal/{}", asset.name);

        let first = get(&router, &path, &[]).await;

        assert_eq!(first.status, StatusCode::OK, "{path}");
        let expected = if asset.name.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&first, "content-type"), expected, "{path}");
        assert_secured(&first, &path);
        let served = String::from_utf8(first.body.clone()).unwrap();
        assert_eq!(
            served.replace(
                &format!("?v={}", Portal::local(&RoleGroups::default()).version()),
                ""
            ),
            asset.body,
            "{path}: the file as written, its imports versioned"
        );
        let etag = header(&first, "etag").to_owned();
        assert!(
            etag.starts_with('"') && !etag.starts_with("W/"),
            "{path}: strong ETag, got {etag}"
        );
        assert_eq!(header(&first, "cache-control"), "no-cache", "{path}");

        let again = get(&router, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty(), "{path}");
        assert_secured(&again, &path);

        let stale = get(&router, &path, &[("if-none-match", "\"something-old\"")]).await;
        assert_eq!(
            stale.status,
            StatusCode::OK,
            "{path}: a changed file is sent again"
        );
    }
}

/// The version the page names its files with (`/portal/app.js?v=<version>`).
fn router_portal_version(html: &str) -> String {
    html.split("/portal/app.js?v=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_page_is_revalidated_and_its_versioned_files_are_cached_for_a_year_gzipped() {
    let router = local();
    let page = get(&router, "/", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert_eq!(header(&page, "content-encoding"), "gzip");
    let html = gunzip(&page.body);
    let version = router_portal_version(&html);

    for asset in ASSETS {
        let path = format!("/portal/{}?v={version}", asset.name);
        let first = get(&router, &path, &[("accept-encoding", "gzip")]).await;

        assert_eq!(first.status, StatusCode::OK, "{path}");
        assert_eq!(
            header(&first, "cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert_eq!(header(&first, "content-encoding"), "gzip", "{path}");
        assert_eq!(header(&first, "vary"), "Accept-Encoding", "{path}");
        assert_secured(&first, &path);
        let plain = get(&router, &path, &[]).await;
        assert_eq!(gunzip(&first.body).as_bytes(), plain.body, "{path}");
        assert!(plain.headers.get("content-encoding").is_none(), "{path}");
        assert_ne!(
            header(&first, "etag"),
            header(&plain, "etag"),
            "{path}: each representation has its own tag"
        );

        let old = get(&router, &format!("/portal/{}?v=0000", asset.name), &[]).await;
        assert_eq!(
            header(&old, "cache-control"),
            "no-cache",
            "{path}: a file asked for under another version is not cached as this one"
        );
    }
}

fn gunzip(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

#[tokio::test]
async fn an_unknown_portal_file_is_a_404_in_the_api_error_shape_with_the_headers() {
    let router = local();
    for path in [
        "/portal/nothing.js",
        "/portal/..%2Fsrc%2Flib.rs",
        "/portal/index.html.bak",
    ] {
        let answer = get(&router, path, &[]).await;

        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_secured(&answer, path);
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["error"]["code"], "no_such_file", "{path}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    let deeper = get(&router, "/portal/a/b.js", &[]).await;
    assert_eq!(deeper.status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&deeper.body).unwrap();
    assert_eq!(body["error"]["code"], "no_such_route");
}

#[tokio::test]
async fn the_local_page_is_told_to_offer_the_identity_picker_and_the_role_groups() {
    let router = local();

    let answer = get(&router, "/portal/config.json", &[]).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(header(&answer, "content-type"), "application/json");
    assert_eq!(header(&answer, "cache-control"), "no-store");
    assert_secured(&answer, "config.json");
    let config: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        config,
        serde_json::json!({"mode": "local", "approver_group": "ticketbound-approvers", "admin_group": "ticketbound-admins", "auditor_group": "ticketbound-auditors"})
    );
}

#[tokio::test]
async fn on_lambda_the_page_loads_without_a_token_and_names_the_identity_provider_in_its_policy() {
    let router = lambda(Some(oidc()));
    let event = |path: &str| {
        let mut event: Value =
            serde_json::from_str(include_str!("../fixtures/apigw-v2-post-jwt.json")).unwrap();
        let object = event.as_object_mut().unwrap();
        for key in ["queryStringParameters", "pathParameters", "body"] {
            object.remove(key);
        }
        event["rawPath"] = path.into();
        event["rawQueryString"] = "".into();
        event["routeKey"] = format!("GET {path}").into();
        event["headers"] = serde_json::json!({"host": "api.example.com"});
        event["isBase64Encoded"] = false.into();
        event["requestContext"]["routeKey"] = event["routeKey"].clone();
        event["requestContext"]["http"]["method"] = "GET".into();
        event["requestContext"]["http"]["path"] = path.into();
        event["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
        lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
    };

    let page = router.clone().oneshot(event("/")).await.unwrap();
    let config = router
        .clone()
        .oneshot(event("/portal/config.json"))
        .await
        .unwrap();

    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert_eq!(
        csp,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' https://acme.auth.eu-west-1.amazoncognito.com; \
         form-action 'self' https://acme.auth.eu-west-1.amazoncognito.com; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let body = config.into_body().collect().await.unwrap().to_bytes();
    let config: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["mode"], "oidc");
    assert_eq!(config["client_id"], "portal-client");
    assert_eq!(config["issuer"], oidc().issuer);
    assert_eq!(
        config["authorization_endpoint"],
        oidc().authorization_endpoint
    );
    assert_eq!(config["token_endpoint"], oidc().token_endpoint);
    assert_eq!(config["scopes"], "openid email profile");
    assert_eq!(config["groups_claim"], "cognito:groups");
}

#[tokio::test]
async fn on_lambda_without_a_client_id_the_page_is_told_sign_in_is_unconfigured() {
    let router = lambda(None);

    let answer = get(&router, "/portal/config.json", &[]).await;

    let config: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(config["mode"], "unconfigured");
    assert!(config.get("client_id").is_none());
}

#[tokio::test]
async fn the_api_keeps_its_answers_next_to_the_portal() {
    let router = lambda(Some(oidc()));

    let unauthenticated = get(&router, "/v1/grants", &[]).await;
    let missing = get(&router, "/v1/nothing-here", &[]).await;

    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    // The API's answers carry the policy of data (nothing runs, nothing frames them), not the page's.
    for answer in [&unauthenticated, &missing] {
        assert_eq!(
            answer.headers["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    }
    let body: Value = serde_json::from_slice(&missing.body).unwrap();
    assert_eq!(body["error"]["code"], "no_such_route");
}

#[test]
fn the_first_page_with_everything_it_loads_stays_under_100_kb() {
    // Admin and All access are imported when first opened, never by the first page.
    let lazy = ["admin.js", "access.js"];
    let total: usize = INDEX.body.len()
        + ASSETS
            .iter()
            .filter(|a| !lazy.contains(&a.name))
            .map(|a| a.body.len())
            .sum::<usize>();

    assert!(
        total < 100 * 1024,
        "the first page weighs {total} bytes (index.html and every asset it loads), over 100 KB"
    );
}

#[test]
fn the_page_loads_only_files_the_portal_serves() {
    let mut loaded: Vec<String> = Vec::new();
    let sources = std::iter::once(&INDEX).chain(ASSETS);
    for asset in sources {
        for marker in ["href=\"/portal/", "src=\"/portal/", "from \"./"] {
            for piece in asset.body.split(marker).skip(1) {
                let name = piece.split(['"', '?']).next().unwrap();
                loaded.push(name.to_owned());
            }
        }
    }
    assert!(loaded.iter().any(|n| n == "app.js"), "{loaded:?}");
    for name in &loaded {
        assert!(
            ASSETS.iter().any(|a| a.name == *name),
            "{name} is loaded by the page but not served (so not counted in its weight)"
        );
    }
    assert_eq!(ROUTES, &[("GET", "/"), ("GET", "/portal/{file}")]);
}

/// The page keeps grants on screen by asking "anything new?": a grant and a list of grants answer a strong
/// `ETag` over what they answered and 304 while nothing a reader could see has changed; a decision changes both.
#[tokio::test]
async fn grant_reads_answer_an_etag_and_304_until_the_grant_changes() {
    let router = local();
    let made = resources::put(
        &router,
        "payroll",
        &serde_json::json!({"name": "Payroll", "provisioner": {"kind": "none"}}),
        None,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.json);
    let id = request_grant(&router, ALICE, "payroll", "PT1H").await;
    let one = format!("/v1/grants/{id}");
    let mine = "/v1/grants?requester=alice@example.com";

    let grant = send(&router, "GET", &one, ALICE, &[], None).await;
    let list = send(&router, "GET", mine, ALICE, &[], None).await;
    let (grant_tag, list_tag) = (grant.etag.unwrap(), list.etag.unwrap());
    assert!(grant_tag.starts_with('"') && list_tag.starts_with('"'));
    assert_eq!(grant.json["status"], "pending");

    for (path, tag) in [(&one[..], &grant_tag), (mine, &list_tag)] {
        let again = send(&router, "GET", path, ALICE, &[("if-none-match", tag)], None).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.json, Value::Null, "{path}: no body");
        assert_eq!(again.etag.as_deref(), Some(&tag[..]), "{path}");
    }

    let (status, denied) = call(&router, "POST", &format!("{one}/deny"), APPROVER, None).await;
    assert_eq!(status, StatusCode::OK, "{denied}");
    for (path, tag) in [(&one[..], &grant_tag), (mine, &list_tag)] {
        let changed = send(&router, "GET", path, ALICE, &[("if-none-match", tag)], None).await;
        assert_eq!(changed.status, StatusCode::OK, "{path}");
        assert_ne!(changed.etag.as_deref(), Some(&tag[..]), "{path}");
    }
    let other = send(
        &router,
        "GET",
        &one,
        MALLORY,
        &[("if-none-match", &grant_tag)],
        None,
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::NOT_FOUND,
        "a tag is no way around who may read the grant: {}",
        other.json
    );
    assert_eq!(other.json["error"]["code"], "grant_not_found");
}
