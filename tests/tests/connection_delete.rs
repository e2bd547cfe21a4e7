//! Deleting a connection never leaves grants bound to it: while pending or active grants are bound to its
//! tickets the deletion is refused, naming them; `?end_grants=true` ends them (as `connection_removed`, their
//! access removed by the provisioner as for any end) and then deletes it; a connection created again under the
//! same id adopts nothing, so its webhooks end none of the old grants.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use ticketbound::domain::TicketRef;
use ticketbound::domain::webhook_auth::hub_signature;
use ticketbound::ports::{GrantFilter, GrantStore};
use ticketbound_tests::{ADMIN, JiraStack, call, provisioner_actions, seed_bound_active_grants};

/// The app of [`JiraStack`] with the connection `jira-main` on its fake Jira Cloud.
struct Deployment(JiraStack);

impl std::ops::Deref for Deployment {
    type Target = JiraStack;
    fn deref(&self) -> &JiraStack {
        &self.0
    }
}

async fn deployment() -> Deployment {
    let d = Deployment(JiraStack::start("connection-delete").await);
    d.create_connection().await;
    d
}

impl Deployment {
    /// Creates `jira-main`; returns its webhook secret.
    async fn create_connection(&self) -> String {
        self.create_jira_main(json!({})).await
    }

    async fn delete(&self, query: &str) -> (StatusCode, Value) {
        call(
            &self.router,
            "DELETE",
            &format!("/v1/connections/jira-main{query}"),
            ADMIN,
            None,
        )
        .await
    }

    async fn connection_exists(&self) -> bool {
        let (status, _) = call(
            &self.router,
            "GET",
            "/v1/connections/jira-main",
            ADMIN,
            None,
        )
        .await;
        status == StatusCode::OK
    }

    /// Every grant and what the provisioner received: what a deletion that is refused must leave alone.
    async fn snapshot(&self) -> Value {
        let grants = self
            .store
            .list_grants(&GrantFilter::default(), 200, None)
            .await
            .unwrap()
            .items;
        json!({"grants": grants, "calls": provisioner_actions(&self.provisioner).await})
    }
}

/// The real Cloud capture of an issue update, for `key`, moved to Done.
fn cloud_closing(key: &str) -> Value {
    let mut body: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/fixtures/jira-cloud-issue-updated-status-inprogress.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    body["issue"]["key"] = key.into();
    body["issue"]["id"] = support::issue_id(key).into();
    body["issue"]["fields"]["status"] = json!({"name": "Done", "id": "10001", "statusCategory": {"id": 3, "key": "done", "colorName": "green", "name": "Done"}});
    body["changelog"]["items"] = json!([
        {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "3", "fromString": "In Progress", "to": "10001", "toString": "Done"}
    ]);
    body
}

#[tokio::test]
async fn a_connection_with_live_grants_is_not_deleted_and_the_refusal_names_them() {
    let d = deployment().await;
    let active = d.bound_grant("SEC-42", false).await;
    let pending = d.bound_grant("SEC-43", true).await;
    let before = d.snapshot().await;

    // Neither a plain DELETE nor `force` leaves them without a way to end.
    for query in ["", "?force=true", "?end_grants=false"] {
        let (status, body) = d.delete(query).await;
        assert_eq!(status, StatusCode::CONFLICT, "{query}: {body}");
        assert_eq!(body["error"]["code"], "connection_in_use", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("2 grants") && message.contains(&active) && message.contains(&pending),
            "{message}"
        );
        assert!(message.contains("end_grants=true"), "{message}");
        assert!(d.connection_exists().await);
        assert_eq!(
            d.snapshot().await,
            before,
            "a refused deletion changes nothing"
        );
    }

    let (status, body) = d.delete("?end_grants=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_end_grants");
    assert_eq!(d.snapshot().await, before);
}

#[tokio::test]
async fn end_grants_ends_them_as_connection_removed_then_deletes_and_a_recreated_connection_adopts_none()
 {
    let d = deployment().await;
    let active = d.bound_grant("SEC-42", false).await;
    let pending = d.bound_grant("SEC-43", true).await;

    let (status, body) = d.delete("?end_grants=true").await;

    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(!d.connection_exists().await);
    let ended = d.grant(&active).await;
    assert_eq!(
        (
            ended["status"].as_str(),
            ended["end_reason"].as_str(),
            ended["ended_by"].as_str()
        ),
        (Some("ended"), Some("connection_removed"), Some(ADMIN.0)),
        "{ended}"
    );
    assert_eq!(ended["deprovisioning"]["state"], "done", "{ended}");
    let cancelled = d.grant(&pending).await;
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["end_reason"].as_str()
        ),
        (Some("cancelled"), Some("connection_removed")),
        "{cancelled}"
    );
    assert_eq!(
        provisioner_actions(&d.provisioner).await,
        ["grant", "revoke"],
        "the access is removed once; the pending request had none"
    );

    // The same id again, with a webhook secret of its own: its signed closing of SEC-42 finds nothing to end.
    let secret = d.create_connection().await;
    let before = d.snapshot().await;
    let bytes = cloud_closing("SEC-42").to_string().into_bytes();
    let request = Request::builder()
        .method("POST")
        .uri("/webhooks/jira/jira-main")
        .header("content-type", "application/json")
        .header("x-hub-signature", hub_signature(&secret, &bytes))
        .header("x-atlassian-webhook-identifier", "after-recreate")
        .body(Body::from(bytes))
        .unwrap();
    let response = d.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "an authentic delivery");
    assert_eq!(d.snapshot().await, before, "no old grant changed");
}

#[tokio::test]
async fn a_connection_id_still_bound_to_open_grants_of_a_deleted_connection_is_not_reused() {
    let d = deployment().await;
    // Grants orphaned before deletions ended them: bound to `ghost`, which no longer exists.
    let ghost = TicketRef {
        connection: "ghost".into(),
        key: "SEC-42".into(),
    };
    let orphans = seed_bound_active_grants(&d.app, &ghost, "prod-db", 1).await;
    let body = json!({"id": "ghost", "kind": "jira_cloud", "base_url": d.jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"});

    let (status, refused) = call(
        &d.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;

    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "connection_id_in_use");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&orphans[0]),
        "{refused}"
    );
    let (status, _) = call(&d.router, "GET", "/v1/connections/ghost", ADMIN, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
