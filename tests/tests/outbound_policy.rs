//! The outbound URL policy through the portal API: every spelling of a refused address (the metadata address
//! in its IPv6 forms, unspecified, multicast, broadcast) is refused with 422 for a connection's base URL and a
//! provisioner's URL alike, and nothing is stored. (A host *name* that resolves to such an address is refused
//! when it is called, by the outbound client's resolver: `adapters::tls`'s tests.)

mod support;

use axum::http::StatusCode;
use serde_json::json;

use support::{ADMIN, quick_policy, spawn_app};

const REFUSED_HOSTS: [&str; 9] = [
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[::a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::a9fe:a9fe]",
    "0.0.0.0",
    "[::]",
    "224.0.0.1",
    "255.255.255.255",
];

#[tokio::test]
async fn a_connection_at_any_spelling_of_a_refused_address_is_refused_and_not_stored() {
    let app = spawn_app(quick_policy()).await;
    for host in REFUSED_HOSTS {
        let base_url = format!("https://{host}/");
        let answer = app
            .call(
                "POST",
                "/v1/connections",
                ADMIN,
                Some(
                    json!({"id": "jira-dc", "kind": "jira_data_center", "base_url": base_url,
                    "personal_access_token": "pat-0123456789abcdef"}),
                ),
            )
            .await;

        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{host}: {}",
            answer.text
        );
        assert_eq!(answer.json["error"]["code"], "invalid_base_url", "{host}");
        assert!(
            !answer.text.contains("pat-0123456789abcdef"),
            "no secret in the answer"
        );
        let stored = app
            .call("GET", "/v1/connections/jira-dc", ADMIN, None)
            .await;
        assert_eq!(stored.status, StatusCode::NOT_FOUND, "{host}");
    }
}

#[tokio::test]
async fn a_provisioner_at_any_spelling_of_a_refused_address_is_refused_and_not_stored() {
    let app = spawn_app(quick_policy()).await;
    for host in REFUSED_HOSTS {
        let answer = app
            .call(
                "PUT",
                "/v1/resources/x-db",
                ADMIN,
                Some(json!({"name": "x", "provisioner": {"kind": "webhook",
                    "url": format!("https://{host}/grant"), "secret": "0123456789abcdef0"}})),
            )
            .await;

        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{host}: {}",
            answer.text
        );
        assert_eq!(answer.json["error"]["code"], "invalid_url", "{host}");
        let stored = app.call("GET", "/v1/resources/x-db", ADMIN, None).await;
        assert_eq!(stored.status, StatusCode::NOT_FOUND, "{host}");
    }
}
