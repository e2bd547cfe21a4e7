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
    assert!(html.contains("<script type=\"module\" src=\"/portal/app.js\">"));
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
        assert_eq!(first.body, asset.body.as_bytes(), "{path}");
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
    let total: usize = INDEX.body.len() + ASSETS.iter().map(|a| a.body.len()).sum::<usize>();

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
                let name = piece.split('"').next().unwrap();
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
