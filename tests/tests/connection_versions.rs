//! Versioned connections: an admin's edit of a connection never silently overwrites another's. `ETag` on
//! `GET`, `POST` and `PATCH`; `If-Match` on `PATCH` and `DELETE` (412 `version_conflict` with the connection as it
//! now is, secrets masked); without `If-Match` a change applies as it always did. The stores' conditional write
//! is in `connection_store_contract.rs`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use ticketbound_tests::{Reply, connections, local_router, local_test_app};

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
