//! The portal's AWS sign-in in a real browser: OpenID Connect, authorization code with PKCE (S256), against a
//! fake identity provider, with the API function's router (`api_router_with_portal`, identity from JWT claims)
//! behind a small stand-in for API Gateway that turns each browser request into a real payload-2.0 event and,
//! on `/v1`, plays the JWT authorizer (issuer, audience, expiry; the signature is API Gateway's job and is not
//! checked here). It proves the page signs in, sends the ID token as a Bearer token, keeps no token in any
//! storage, and refuses a return whose `state` it did not issue.

mod browser;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use browser::{Browser, free_port, temp_dir};
use ticketbound::config::OidcSettings;
use ticketbound::domain::identity::RoleGroups;
use ticketbound::http::{AppState, IdentitySource, Portal, api_router_with_portal};

const CLIENT_ID: &str = "portal-client";
const GROUPS_CLAIM: &str = "cognito:groups";

/// What the fake identity provider saw.
#[derive(Default)]
struct Idp {
    /// The authorization request's query.
    authorize: BTreeMap<String, String>,
    /// The token request's form.
    token: BTreeMap<String, String>,
    /// The ID token it issued.
    id_token: Option<String>,
}

fn query(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn jwt(claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        part(&json!({"alg": "RS256", "kid": "test"})),
        part(claims)
    )
}

/// An identity provider that signs Alice in at once: `/authorize` redirects back with a code and the `state`,
/// `/token` issues an ID token only for that code, redirect URI and a verifier whose S256 is the challenge.
async fn fake_idp(issuer: &str, seen: Arc<Mutex<Idp>>) -> MockServer {
    let server = MockServer::start().await;
    let on_authorize = seen.clone();
    Mock::given(method("GET"))
        .and(path("/authorize"))
        .respond_with(move |request: &Request| {
            let q = query(&request.url);
            let location = format!(
                "{}?code=code-1&state={}",
                q["redirect_uri"],
                url::form_urlencoded::byte_serialize(q["state"].as_bytes()).collect::<String>()
            );
            on_authorize.lock().unwrap().authorize = q;
            ResponseTemplate::new(302).insert_header("location", location.as_str())
        })
        .mount(&server)
        .await;
    let issuer = issuer.to_owned();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(move |request: &Request| {
            let form: BTreeMap<String, String> = url::form_urlencoded::parse(&request.body)
                .into_owned()
                .collect();
            let mut seen = seen.lock().unwrap();
            let a = seen.authorize.clone();
            let challenge = form
                .get("code_verifier")
                .map(|v| URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
            let valid = form.get("grant_type").map(String::as_str) == Some("authorization_code")
                && form.get("code").map(String::as_str) == Some("code-1")
                && form.get("client_id") == a.get("client_id")
                && form.get("redirect_uri") == a.get("redirect_uri")
                && challenge.as_ref() == a.get("code_challenge");
            seen.token = form;
            let cors = ("access-control-allow-origin", "*");
            if !valid {
                return ResponseTemplate::new(400)
                    .insert_header(cors.0, cors.1)
                    .set_body_json(json!({"error": "invalid_grant"}));
            }
            let id_token = jwt(&json!({
                "iss": issuer, "aud": CLIENT_ID, "sub": "alice-sub", "email": "alice@example.com",
                GROUPS_CLAIM: ["engineers"], "nonce": a["nonce"],
                "iat": time::OffsetDateTime::now_utc().unix_timestamp(),
                "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 3600,
            }));
            seen.id_token = Some(id_token.clone());
            ResponseTemplate::new(200)
                .insert_header(cors.0, cors.1)
                .set_body_json(
                    json!({"id_token": id_token, "access_token": "opaque-access",
                                      "token_type": "Bearer", "expires_in": 3600}),
                )
        })
        .mount(&server)
        .await;
    server
}

/// The stand-in for API Gateway: the router, the issuer and audience its JWT authorizer accepts, and every
/// `Authorization` header that reached `/v1`.
#[derive(Clone)]
struct Gateway {
    router: axum::Router,
    issuer: String,
    bearers: Arc<Mutex<Vec<String>>>,
    /// Tokens issued before this (Unix seconds) count as expired, as if time had passed.
    not_before: Arc<Mutex<i64>>,
}

/// API Gateway renders claims as strings, arrays as `"[a b]"`.
fn rendered(claims: &Value) -> Value {
    let map = claims
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|i| i.as_str().unwrap_or_default().to_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                other => other.to_string(),
            };
            (k.clone(), Value::String(text))
        })
        .collect();
    Value::Object(map)
}

impl Gateway {
    /// The JWT authorizer's checks, minus the signature: `Some(claims)` or `None` (401).
    fn authorize(&self, authorization: Option<&str>) -> Option<Value> {
        let token = authorization?.strip_prefix("Bearer ")?;
        let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
        let claims: Value = serde_json::from_slice(&payload).ok()?;
        let fresh = claims["exp"].as_i64()? > time::OffsetDateTime::now_utc().unix_timestamp()
            && claims["iat"].as_i64()? >= *self.not_before.lock().unwrap();
        (claims["iss"] == self.issuer.as_str() && claims["aud"] == CLIENT_ID && fresh)
            .then_some(claims)
    }

    async fn handle(&self, request: axum::extract::Request) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let path = parts.uri.path().to_owned();
        let raw_query = parts.uri.query().unwrap_or_default().to_owned();
        let mut event: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/apigw-v2-post-jwt.json"
        ))
        .unwrap();
        let mut headers = serde_json::Map::new();
        for (name, value) in &parts.headers {
            headers.insert(
                name.as_str().to_owned(),
                Value::String(value.to_str().unwrap_or_default().to_owned()),
            );
        }
        let authorization = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let claims = if path.starts_with("/v1/") {
            self.bearers
                .lock()
                .unwrap()
                .push(authorization.unwrap_or_default().to_owned());
            match self.authorize(authorization) {
                Some(claims) => Some(claims),
                None => {
                    return Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header("content-type", "application/json")
                        .body(Body::from(r#"{"message":"Unauthorized"}"#))
                        .unwrap();
                }
            }
        } else {
            None
        };
        let object = event.as_object_mut().unwrap();
        object.remove("cookies");
        object.remove("pathParameters");
        let parameters: serde_json::Map<String, Value> =
            url::form_urlencoded::parse(raw_query.as_bytes())
                .into_owned()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
        event["queryStringParameters"] = Value::Object(parameters);
        event["rawPath"] = path.clone().into();
        event["rawQueryString"] = raw_query.into();
        event["headers"] = Value::Object(headers);
        event["requestContext"]["http"]["method"] = parts.method.as_str().into();
        event["requestContext"]["http"]["path"] = path.into();
        match claims {
            Some(claims) => {
                event["requestContext"]["authorizer"]["jwt"]["claims"] = rendered(&claims)
            }
            None => {
                event["requestContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("authorizer");
            }
        }
        if body.is_empty() {
            event.as_object_mut().unwrap().remove("body");
        } else {
            event["body"] = STANDARD.encode(&body).into();
            event["isBase64Encoded"] = true.into();
        }
        let request = lambda_http::request::from_str(&event.to_string()).expect("a v2 event");
        self.router.clone().oneshot(request).await.unwrap()
    }
}

async fn gateway(
    State(gateway): State<Gateway>,
    request: axum::extract::Request,
) -> Response<Body> {
    gateway.handle(request).await
}

#[tokio::test(flavor = "multi_thread")]
async fn on_aws_the_page_signs_in_with_pkce_sends_the_id_token_and_keeps_no_token_in_storage() {
    // Arrange: the identity provider, the API function's router with its portal, and a resource to request.
    let seen = Arc::new(Mutex::new(Idp::default()));
    let idp_port = free_port();
    let issuer = format!("https://idp.example.com/pool-{idp_port}");
    let idp = fake_idp(&issuer, seen.clone()).await;
    let data = temp_dir("portal-oidc");
    let (app, _scheduler) =
        ticketbound::wiring::local_app(&data.0, Default::default()).expect("local app");
    let roles = RoleGroups::default();
    let oidc = OidcSettings {
        issuer: issuer.clone(),
        client_id: CLIENT_ID.into(),
        authorization_endpoint: format!("{}/authorize", idp.uri()),
        token_endpoint: format!("{}/token", idp.uri()),
        scopes: "openid email profile".into(),
    };
    let admin =
        ticketbound::domain::Caller::new("admin@example.com", vec![roles.admin.clone()], &roles);
    app.put_resource(
        &admin,
        "prod-db",
        serde_json::from_value(
            json!({"name": "Production database", "provisioner": {"kind": "none"}}),
        )
        .unwrap(),
    )
    .await
    .expect("resource");
    let router = api_router_with_portal(
        AppState {
            app,
            identity: IdentitySource::JwtClaims {
                email_claim: "email".into(),
                groups_claim: GROUPS_CLAIM.into(),
            },
            roles: roles.clone(),
        },
        Portal::aws(Some(oidc), &roles, "email", GROUPS_CLAIM),
    );
    let bearers = Arc::new(Mutex::new(Vec::new()));
    let not_before = Arc::new(Mutex::new(0));
    let service = axum::Router::new().fallback(gateway).with_state(Gateway {
        router,
        issuer: issuer.clone(),
        bearers: bearers.clone(),
        not_before: not_before.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, service).await });
    let browser = Browser::start().await;

    // Act: open the page and sign in.
    browser.goto(&format!("{origin}/#/request")).await;
    browser.wait_text("main", "Sign in").await;
    browser.click("#sign-in").await;
    browser.wait_text("#identity", "alice@example.com").await;
    let who = browser.text("#identity").await.unwrap();
    assert!(who.contains("Signed in as"), "{who}");
    browser.wait_text("#resource-info", "Longest allowed").await;

    // Assert: the authorization request was PKCE S256 for this client, back to the page itself.
    let (authorize, token, id_token) = {
        let seen = seen.lock().unwrap();
        (
            seen.authorize.clone(),
            seen.token.clone(),
            seen.id_token.clone(),
        )
    };
    assert_eq!(authorize["response_type"], "code");
    assert_eq!(authorize["client_id"], CLIENT_ID);
    assert_eq!(authorize["redirect_uri"], format!("{origin}/"));
    assert_eq!(authorize["scope"], "openid email profile");
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert!(authorize["state"].len() >= 32 && authorize["nonce"].len() >= 32);
    assert!(
        token["code_verifier"].len() >= 43,
        "RFC 7636: a verifier of 43 to 128 characters"
    );
    let id_token = id_token.expect("the provider issued an ID token");
    // … the page went back to where it started, with nothing of the sign-in left in the URL or in storage.
    let left = browser
        .script(
            "return [location.search, location.hash, sessionStorage.length, localStorage.length, document.cookie];",
            json!([]),
        )
        .await;
    assert_eq!(left, json!(["", "#/request", 0, 0, ""]));
    // … and it calls /v1 with the ID token, which the JWT authorizer accepts.
    browser
        .type_into("#reason", "INC-9 from the AWS portal")
        .await;
    browser.click("#submit-request").await;
    browser.wait_text("#request-result", "pending").await;
    browser.click("#nav-access").await;
    browser.wait_text("main", "INC-9 from the AWS portal").await;
    browser.screenshot("12-aws-signed-in").await;
    let sent = bearers.lock().unwrap().clone();
    assert!(sent.len() >= 3, "{sent:?}");
    assert!(
        sent.iter().all(|b| *b == format!("Bearer {id_token}")),
        "every /v1 call carries the ID token: {sent:?}"
    );
    assert!(
        browser.text("#nav-admin").await.is_some()
            && browser
                .script(
                    "return document.getElementById('nav-admin').parentElement.hidden;",
                    json!([])
                )
                .await
                == json!(true),
        "Alice is no admin: the Admin page is not offered"
    );

    // When the token expires, the API's 401 makes the page offer to sign in again, which lands where it was.
    *not_before.lock().unwrap() = time::OffsetDateTime::now_utc().unix_timestamp() + 1;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    browser.click("#nav-request").await;
    browser
        .wait_text("#identity", "Your sign-in has expired.")
        .await;
    browser.click("#sign-in").await;
    browser.wait_text("#identity", "Signed in as").await;
    browser.wait_text("#resource-info", "Longest allowed").await;
    assert_eq!(
        browser.script("return location.hash;", json!([])).await,
        json!("#/request")
    );

    // A return the page did not start (a forged `state`) is refused, and nothing is exchanged.
    browser
        .goto(&format!("{origin}/?code=stolen&state=forged"))
        .await;
    let refused = browser.wait_text("main", "state mismatch").await;
    assert!(refused.contains("Sign in"), "{refused}");
    assert_eq!(
        seen.lock().unwrap().token.get("code").map(String::as_str),
        Some("code-1"),
        "the forged code was never sent to the provider"
    );
    browser.quit().await;
}
