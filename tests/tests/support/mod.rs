//! Vendor fixtures of the connection tests (Jira Cloud issues and users, Basic auth). The harness itself (the
//! app, HTTP calls through the router, quick HTTP policies, the moto guard) is the one in `ticketbound_tests`,
//! re-exported here so these tests keep reading `support::spawn_app`.

#![allow(dead_code, unused_imports)]

use serde_json::Value;

pub use ticketbound_tests::{
    ADMIN, ALICE, Answer, TestApp, aws, quick_policy, require_moto, spawn_app, spawn_app_on_disk,
    temp_dir,
};

/// The approver of the connection tests.
pub const BOB: (&str, &str) = ticketbound_tests::APPROVER;

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A Jira Cloud issue as `/rest/api/3/issue/{key}` answers it.
/// A stable numeric issue id per key, as Jira gives every issue one (distinct keys, distinct ids).
pub fn issue_id(key: &str) -> String {
    let hash = key
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (10_000 + hash % 900_000).to_string()
}

pub fn cloud_issue(key: &str, status: &str, category: &str, assignee: Option<Value>) -> Value {
    let id = issue_id(key);
    serde_json::json!({
        "id": id,
        "key": key,
        "self": format!("https://acme.atlassian.net/rest/api/3/issue/{id}"),
        "fields": {
            "summary": format!("Summary of {key}"),
            "assignee": assignee,
            "status": {
                "name": status, "id": "3",
                "statusCategory": {"id": 4, "key": category, "colorName": "yellow", "name": "Localised name"}
            }
        }
    })
}

pub fn cloud_user(account: &str, email: Option<&str>) -> Value {
    let mut user = serde_json::json!({
        "accountId": account, "accountType": "atlassian", "displayName": format!("User {account}"), "active": true
    });
    if let Some(e) = email {
        user["emailAddress"] = Value::String(e.to_owned());
    }
    user
}
