//! Text an approver reads (a grant's reason, a resource's name and description) through the router: control and
//! invisible formatting characters that could make it read differently are refused with 422 `invalid_text`
//! naming the field, and the refused request changes nothing. Ordinary text in any script is kept as typed.

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

use ticketbound_tests::*;

/// Characters that reorder or hide text (bidirectional overrides, isolates and marks, a zero-width space, the
/// byte-order mark) and control characters (escape, carriage return, bell).
const SPOOFING: &[char] = &[
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200E}', '\u{200F}', '\u{200B}', '\u{FEFF}', '\u{1B}', '\r', '\u{7}',
];

/// Everything a client could observe of grants and resources, read as an admin through the API.
async fn observed(router: &Router) -> Value {
    let (status, grants) = call(router, "GET", "/v1/grants?limit=200", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{grants}");
    let (status, resources) = call(router, "GET", "/v1/resources?limit=200", ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{resources}");
    json!({"grants": grants, "resources": resources})
}

fn assert_refused(status: StatusCode, body: &Value, field: &str, c: char) {
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "U+{:04X}: {body}",
        u32::from(c)
    );
    assert_eq!(body["error"]["code"], "invalid_text", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("`{field}`")),
        "names the field: {message}"
    );
    assert!(
        message.contains(&format!("U+{:04X}", u32::from(c))),
        "names the character: {message}"
    );
}

async fn app_with_resource() -> Router {
    let (app, _store, _) = local_test_app();
    let router = local_router(app);
    let body = json!({"name": "Production database", "description": "Read-write role", "provisioner": {"kind": "none"}});
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
async fn a_reason_with_a_direction_override_or_control_character_is_refused_and_nothing_is_stored()
{
    let router = app_with_resource().await;
    let before = observed(&router).await;

    for &c in SPOOFING {
        let body = json!({"resource": "prod-db", "reason": format!("INC-7 {c}gnitseuqer"), "duration": "PT1H"});
        let (status, json) = call(
            &router,
            "POST",
            "/v1/grants",
            ALICE,
            Some(&body.to_string()),
        )
        .await;
        assert_refused(status, &json, "reason", c);
    }

    assert_eq!(
        observed(&router).await,
        before,
        "a refused request stores no grant"
    );
}

#[tokio::test]
async fn a_resource_name_or_description_with_a_spoofing_character_is_refused_and_the_resource_is_unchanged()
 {
    let router = app_with_resource().await;
    let before = observed(&router).await;

    for &c in SPOOFING {
        for (field, body) in [
            (
                "name",
                json!({"name": format!("Prod{c} db"), "provisioner": {"kind": "none"}}),
            ),
            (
                "description",
                json!({"name": "Prod db", "description": format!("read{c}only"), "provisioner": {"kind": "none"}}),
            ),
        ] {
            // Both a replacement of the existing resource and a new one.
            for id in ["prod-db", "new-db"] {
                let (status, json) = call(
                    &router,
                    "PUT",
                    &format!("/v1/resources/{id}"),
                    ADMIN,
                    Some(&body.to_string()),
                )
                .await;
                assert_refused(status, &json, field, c);
            }
        }
    }

    assert_eq!(observed(&router).await, before, "the catalog is as it was");
}

#[tokio::test]
async fn a_line_break_is_free_text_in_a_description_and_a_reason_but_not_in_a_name() {
    let router = app_with_resource().await;

    let body = json!({"name": "Prod\ndb", "provisioner": {"kind": "none"}});
    let (status, json) = call(
        &router,
        "PUT",
        "/v1/resources/other",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_refused(status, &json, "name", '\n');

    let body = json!({"name": "Prod db", "description": "Read-write.\n\tAsk the DBA lead first.", "provisioner": {"kind": "none"}});
    let (status, json) = call(
        &router,
        "PUT",
        "/v1/resources/other",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(
        json["description"],
        "Read-write.\n\tAsk the DBA lead first."
    );

    let body = json!({"resource": "prod-db", "reason": "INC-7\nreplica lag", "duration": "PT1H"});
    let (status, json) = call(
        &router,
        "POST",
        "/v1/grants",
        ALICE,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["reason"], "INC-7\nreplica lag");
}

#[tokio::test]
async fn ordinary_text_in_any_script_is_stored_as_typed() {
    let router = app_with_resource().await;

    let name = "بيانات الإنتاج — 日本語 👩\u{200D}💻";
    let body =
        json!({"name": name, "description": "می\u{200C}خواهم", "provisioner": {"kind": "none"}});
    let (status, json) = call(
        &router,
        "PUT",
        "/v1/resources/intl",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["name"], name);

    let reason = "Données de production: accès en lecture";
    let body = json!({"resource": "intl", "reason": reason, "duration": "PT1H"});
    let (status, json) = call(
        &router,
        "POST",
        "/v1/grants",
        ALICE,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["reason"], reason);
}
