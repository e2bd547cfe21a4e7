//! Request shapes docs/openapi.yaml states and the server holds to, through the router as the local server serves
//! it: a body is a JSON object of exactly the documented fields, `null` only where the description allows it.
//! Each refusal is 400 `malformed_request` and changes nothing. (infra/fuzz_api.sh checks the whole description
//! against the built server; these pin the cases it found.)

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

use ticketbound_tests::*;

/// Everything a client could observe of grants and resources, read as an admin through the API.
async fn observed(router: &Router) -> Value {
    let (status, grants) = call(router, "GET", "/v1/grants?limit=200", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{grants}");
    let (status, resources) = call(router, "GET", "/v1/resources?limit=200", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{resources}");
    json!({"grants": grants, "resources": resources})
}

fn assert_malformed(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "malformed_request", "{body}");
}

async fn app_with_resource() -> Router {
    let (app, _store, _) = local_test_app();
    let router = local_router(app);
    let body = json!({"name": "Production database", "provisioner": {"kind": "none"}});
    let (status, json) = call(
        &router,
        "PUT",
        "/v1/resources/prod-db",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    router
}

#[tokio::test]
async fn a_body_that_is_an_array_of_the_fields_is_malformed_not_read_in_order() {
    let router = app_with_resource().await;
    let before = observed(&router).await;

    for (method, path, who, body) in [
        (
            "POST",
            "/v1/grants",
            ALICE,
            r#"["prod-db", "INC-7", "PT1H"]"#,
        ),
        (
            "PUT",
            "/v1/resources/other-db",
            ADMIN,
            r#"[null, "Other", "", null, false, {"kind": "none"}]"#,
        ),
        ("POST", "/v1/connections", ADMIN, "[null, null]"),
        ("PATCH", "/v1/connections/jira-main", ADMIN, "[null, null]"),
        ("POST", "/v1/grants", ALICE, r#""prod-db""#),
    ] {
        let (status, json) = call(&router, method, path, who, Some(body)).await;
        assert_malformed(status, &json);
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("JSON object")),
            "{method} {path}: {json}"
        );
    }

    assert_eq!(observed(&router).await, before, "nothing was stored");
}

#[tokio::test]
async fn a_null_ticket_is_malformed_rather_than_read_as_unbound() {
    let router = app_with_resource().await;
    let before = observed(&router).await;

    let body =
        json!({"resource": "prod-db", "reason": "INC-7", "duration": "PT1H", "ticket": null});
    let (status, json) = call(
        &router,
        "POST",
        "/v1/grants",
        ALICE,
        Some(&body.to_string()),
    )
    .await;

    assert_malformed(status, &json);
    assert_eq!(observed(&router).await, before, "no grant was stored");
}

#[tokio::test]
async fn a_none_provisioner_refuses_the_fields_of_another_kind_instead_of_dropping_them() {
    let router = app_with_resource().await;
    let before = observed(&router).await;

    for extra in [
        json!({"url": "https://access.example.com/hook"}),
        json!({"secret": "provisioner-secret-0123456789"}),
        json!({"connection": "jira-main"}),
    ] {
        let mut provisioner = json!({"kind": "none"});
        provisioner
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let body = json!({"name": "Production database", "provisioner": provisioner});
        for id in ["prod-db", "new-db"] {
            let (status, json) = call(
                &router,
                "PUT",
                &format!("/v1/resources/{id}"),
                ADMIN,
                Some(&body.to_string()),
            )
            .await;
            assert_malformed(status, &json);
            let field = extra.as_object().unwrap().keys().next().unwrap();
            assert!(
                json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("`{field}`"))),
                "names the field: {json}"
            );
        }
    }

    assert_eq!(observed(&router).await, before, "the catalog is as it was");
}
