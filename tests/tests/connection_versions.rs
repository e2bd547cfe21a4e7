//! Versioned connections: an admin's edit of a connection never silently overwrites another's. `ETag` on
//! `GET`, `POST` and `PATCH`; `If-Match` on `PATCH` and `DELETE` (412 `version_conflict` with the connection as it
//! now is, secrets masked); without `If-Match` a change applies as it always did. Each item of the list carries
//! the same tag as `version`, and `GET` answers `304` to an `If-None-Match` naming it. The stores' conditional
//! writes and deletes are in `connection_store_contract.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::secrets::LocalSecretStore;
use ticketbound::domain::connection::{
    AuthState, ClosedStatuses, Connection, ConnectionSettings, MissedClosing,
};
use ticketbound::ports::{
    ConnectionStore, Page, SecretStore, StoreError, SystemClock, VersionedConnection,
};
use ticketbound::service::{Ports, Settings, Ticketbound};
use ticketbound_tests::{
    APPROVER, Reply, connections, embedded_store, local_router, local_test_app, send, temp_dir,
    test_ports,
};

const KEY: &str = "fs-key-0123456789";

fn app() -> axum::Router {
    local_router(local_test_app().0)
}

/// Creates Freshservice connection `fs`; its tag.
async fn created(router: &axum::Router) -> String {
    let reply = connections::create(
        router,
        &json!({"id": "fs", "kind": "freshservice", "domain": "acme", "api_key": KEY, "closed_statuses": [4, 5]}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
    reply.etag.expect("a create answers its ETag")
}

fn assert_conflict(reply: &Reply, current: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        reply.json
    );
    let error = &reply.json["error"];
    assert_eq!(error["code"], "version_conflict");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    // What is stored now, as GET shows it, so the client can show what changed and retry on top of it.
    assert_eq!(error["current_version"].as_str(), current.etag.as_deref());
    assert_eq!(reply.etag, current.etag);
    assert_eq!(error["current"], current.json);
    assert!(
        !reply.text.contains(KEY),
        "a conflict never shows a secret: {}",
        reply.text
    );
}

#[tokio::test]
async fn reads_and_writes_answer_the_tag_and_a_change_moves_it() {
    let router = app();
    let tag = created(&router).await;

    let read = connections::get(&router, "fs").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.etag.as_deref(), Some(tag.as_str()));

    let changed =
        connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), Some(&tag)).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json);
    assert_eq!(changed.json["closed_statuses"], json!([5]));
    let new_tag = changed.etag.clone().expect("a change answers its ETag");
    assert_ne!(new_tag, tag);
    assert_eq!(connections::get(&router, "fs").await.etag, Some(new_tag));
}

#[tokio::test]
async fn the_second_of_two_admins_editing_from_one_read_gets_412_and_loses_nothing() {
    let router = app();
    let tag = created(&router).await;

    // Both admins read the same version; the first saves a new closed status.
    let first =
        connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), Some(&tag)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    // The second, still at the old version, changes the domain.
    let second = connections::patch(&router, "fs", &json!({"domain": "other"}), Some(&tag)).await;

    let now = connections::get(&router, "fs").await;
    assert_conflict(&second, &now);
    // The first admin's change stands and the refused one changed nothing.
    assert_eq!(now.json, first.json);
    assert_eq!(now.json["closed_statuses"], json!([5]));
    assert_eq!(now.json["base_url"], "https://acme.freshservice.com");
    // Made again on top of the version the conflict named, it applies.
    let retried = connections::patch(
        &router,
        "fs",
        &json!({"domain": "other"}),
        second.json["error"]["current_version"].as_str(),
    )
    .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.json);
    assert_eq!(retried.json["base_url"], "https://other.freshservice.com");
    assert_eq!(retried.json["closed_statuses"], json!([5]));
}

#[tokio::test]
async fn a_stale_rotation_is_refused_and_the_secret_stays_as_it_was() {
    let router = app();
    let tag = created(&router).await;
    let first =
        connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), Some(&tag)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);

    let stale = connections::patch(
        &router,
        "fs",
        &json!({"new_webhook_secret": true}),
        Some(&tag),
    )
    .await;

    let now = connections::get(&router, "fs").await;
    assert_conflict(&stale, &now);
    assert_eq!(now.json["webhook_secrets_active"], 1, "{}", now.json);
}

#[tokio::test]
async fn a_stale_delete_is_refused_and_a_current_one_deletes() {
    let router = app();
    let tag = created(&router).await;
    let first =
        connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), Some(&tag)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);

    let stale = connections::delete(&router, "fs", Some(&tag)).await;
    let now = connections::get(&router, "fs").await;
    assert_conflict(&stale, &now);
    assert_eq!(now.status, StatusCode::OK, "the connection is still there");

    let current = connections::delete(&router, "fs", now.etag.as_deref()).await;
    assert_eq!(current.status, StatusCode::NO_CONTENT, "{}", current.json);
    assert_eq!(
        connections::get(&router, "fs").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_conditional_change_of_a_deleted_connection_is_412_with_nothing_current() {
    let router = app();
    let tag = created(&router).await;
    let deleted = connections::delete(&router, "fs", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let stale =
        connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), Some(&tag)).await;

    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.json
    );
    assert_eq!(stale.json["error"]["code"], "version_conflict");
    assert_eq!(stale.json["error"]["current"], Value::Null);
    assert_eq!(stale.json["error"]["current_version"], Value::Null);
    assert_eq!(stale.etag, None);
}

#[tokio::test]
async fn without_if_match_changes_apply_as_before_and_a_weak_or_unknown_tag_never_matches() {
    let router = app();
    let tag = created(&router).await;
    let first = connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    // A script that never read the tag still changes the connection, over the change before it.
    let second = connections::patch(&router, "fs", &json!({"closed_statuses": [4]}), None).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    assert_eq!(second.json["closed_statuses"], json!([4]));

    let current = second.etag.clone().unwrap();
    for sent in [format!("W/{current}"), "\"nope\"".to_owned(), tag] {
        let refused =
            connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), Some(&sent)).await;
        assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED, "{sent}");
        assert_eq!(refused.json["error"]["code"], "version_conflict");
    }
    let star = connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), Some("*")).await;
    assert_eq!(
        star.status,
        StatusCode::OK,
        "`*` matches any stored version"
    );
    assert_eq!(
        connections::get(&router, "fs").await.json["closed_statuses"],
        json!([5])
    );
}

/// The embedded store, where another admin's edit of the connection lands at the very moment the store is asked
/// to delete it (after every check the service made before), once armed.
struct EditLandsBeforeDelete {
    inner: EmbeddedStore,
    armed: AtomicBool,
}

impl EditLandsBeforeDelete {
    async fn edit_if_armed(&self, id: &str) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut settings = self
            .inner
            .get_connection(id)
            .await
            .unwrap()
            .expect("the connection to edit")
            .settings;
        settings.closed_statuses = ClosedStatuses::Numbers(vec![5]);
        assert!(self.inner.update_settings(&settings).await.unwrap());
    }
}

#[async_trait]
impl ConnectionStore for EditLandsBeforeDelete {
    async fn insert_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        self.inner.insert_connection(connection).await
    }
    async fn update_settings(&self, settings: &ConnectionSettings) -> Result<bool, StoreError> {
        self.inner.update_settings(settings).await
    }
    async fn update_auth(&self, id: &str, auth: &AuthState) -> Result<bool, StoreError> {
        self.inner.update_auth(id, auth).await
    }
    async fn update_settings_if(
        &self,
        settings: &ConnectionSettings,
        version: u64,
    ) -> Result<u64, StoreError> {
        self.inner.update_settings_if(settings, version).await
    }
    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.inner.get_connection(id).await
    }
    async fn get_connection_versioned(
        &self,
        id: &str,
    ) -> Result<Option<VersionedConnection>, StoreError> {
        self.inner.get_connection_versioned(id).await
    }
    async fn list_connections_versioned(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<VersionedConnection>, StoreError> {
        self.inner.list_connections_versioned(limit, cursor).await
    }
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        self.edit_if_armed(id).await;
        self.inner.delete_connection(id).await
    }
    async fn delete_connection_if(&self, id: &str, version: u64) -> Result<(), StoreError> {
        self.edit_if_armed(id).await;
        self.inner.delete_connection_if(id, version).await
    }
    async fn record_delivery(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        self.inner.record_delivery(id, at).await
    }
    async fn record_missed_closing(
        &self,
        id: &str,
        missed: &MissedClosing,
    ) -> Result<bool, StoreError> {
        self.inner.record_missed_closing(id, missed).await
    }
}

#[tokio::test]
async fn an_edit_landing_just_before_the_delete_refuses_it_and_deletes_nothing_not_even_the_secrets()
 {
    let store = embedded_store();
    let connection_store = Arc::new(EditLandsBeforeDelete {
        inner: store.clone(),
        armed: AtomicBool::new(false),
    });
    let secrets = Arc::new(
        LocalSecretStore::open(&temp_dir("edit-before-delete").join("secrets.json")).unwrap(),
    );
    let ports = Ports {
        connections: connection_store.clone(),
        secrets: secrets.clone(),
        ..test_ports(
            Arc::new(store.clone()),
            Arc::new(LocalScheduler::new(store.clone())),
            Arc::new(SystemClock),
            Duration::from_secs(2),
        )
    };
    let router = local_router(Ticketbound::build(ports, Settings::default()));
    let tag = created(&router).await;
    assert!(secrets.get("fs").await.unwrap().is_some());
    connection_store.armed.store(true, Ordering::SeqCst);

    // Every check before the delete sees the version the admin read; the edit lands at the delete itself.
    let refused = connections::delete(&router, "fs", Some(&tag)).await;

    let now = connections::get(&router, "fs").await;
    assert_eq!(now.status, StatusCode::OK, "the connection is still there");
    assert_eq!(now.json["closed_statuses"], json!([5]), "with the edit");
    assert_conflict(&refused, &now);
    assert!(
        secrets.get("fs").await.unwrap().is_some(),
        "its secrets stay with it"
    );
    // Deleted again at the version the conflict named, it goes, secrets and all.
    let deleted = connections::delete(&router, "fs", now.etag.as_deref()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.json);
    assert_eq!(
        connections::get(&router, "fs").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(secrets.get("fs").await.unwrap().is_none());
}

#[tokio::test]
async fn list_items_carry_the_tag_a_read_answers_and_a_stale_one_deletes_nothing() {
    let router = app();
    let tag = created(&router).await;

    let listed = connections::list(&router).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    assert_eq!(listed.json["items"][0]["id"], "fs");
    assert_eq!(listed.json["items"][0]["version"], tag.as_str());
    // Another admin edits the connection after this list was drawn.
    let edit = connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), None).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.json);
    let relisted = connections::list(&router).await;
    assert_eq!(
        relisted.json["items"][0]["version"].as_str(),
        edit.etag.as_deref(),
        "the list follows the single read's tag"
    );
    assert!(!relisted.text.contains(KEY), "a list never shows a secret");

    let stale =
        connections::delete(&router, "fs", listed.json["items"][0]["version"].as_str()).await;

    let now = connections::get(&router, "fs").await;
    assert_conflict(&stale, &now);
    let current =
        connections::delete(&router, "fs", relisted.json["items"][0]["version"].as_str()).await;
    assert_eq!(current.status, StatusCode::NO_CONTENT, "{}", current.json);
}

#[tokio::test]
async fn get_answers_304_without_a_body_while_if_none_match_names_the_current_tag() {
    let router = app();
    let tag = created(&router).await;

    for sent in [
        tag.clone(),
        format!("\"other\", {tag}"),
        "*".to_owned(),
        // If-None-Match compares weakly (RFC 9110): a cache's `W/` of the tag still names it.
        format!("W/{tag}"),
    ] {
        let unchanged = connections::get_if_none_match(&router, "fs", &sent).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED, "{sent}");
        assert_eq!(unchanged.etag.as_deref(), Some(tag.as_str()), "{sent}");
        assert!(
            unchanged.text.is_empty(),
            "a 304 has no body: {}",
            unchanged.text
        );
    }
    let other = connections::get_if_none_match(&router, "fs", "\"other\"").await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.json["id"], "fs");

    let edit = connections::patch(&router, "fs", &json!({"closed_statuses": [5]}), None).await;
    let changed = connections::get_if_none_match(&router, "fs", &tag).await;
    assert_eq!(changed.status, StatusCode::OK, "a change is shown again");
    assert_eq!(changed.etag, edit.etag);
    assert_eq!(changed.json["closed_statuses"], json!([5]));

    // Who may not read it is refused first, tag or not; a connection that is not there is 404, even for `*`.
    let current = edit.etag.unwrap();
    let refused = send(
        &router,
        "GET",
        "/v1/connections/fs",
        APPROVER,
        &[("if-none-match", current.as_str())],
        None,
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json["error"]["code"], "not_an_admin");
    let missing = connections::get_if_none_match(&router, "nope", "*").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["error"]["code"], "connection_not_found");
}
