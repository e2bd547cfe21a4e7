//! Vendor fixtures of the connection tests (Jira Cloud issues and users, Basic auth). The harness itself (the
//! app, HTTP calls through the router, quick HTTP policies, the moto guard) is the one in `ticketbound_tests`,
//! re-exported here so these tests keep reading `support::spawn_app`.

#![allow(dead_code, unused_imports)]

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

/// Jira Cloud's issues and users (the test kit's, under the names these tests know).
pub use ticketbound_tests::jira_cloud::{issue as cloud_issue, issue_id, user as cloud_user};
