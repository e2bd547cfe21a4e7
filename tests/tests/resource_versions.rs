//! Versioned resources: an edit never silently overwrites another one. `ETag` on reads and writes, `If-Match`
//! on `PUT`/`PATCH`/`DELETE` (412 `version_conflict` with the resource as it now is), `If-None-Match` (304 on
//! `GET`, create-only `PUT`), `PATCH` as a JSON Merge Patch that keeps what it does not name, and the
//! conditional write in both stores (SQLite, and DynamoDB on moto) that lets only one of two racing writers win.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};

use std::time::Duration;

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::domain::{Provisioner, Resource};
use ticketbound::ports::{GrantStore, ResourceExpected, StoreError, SystemClock};
use ticketbound::service::Ticketbound;
use ticketbound_tests::{
    ADMIN, APPROVER, AppParts, Reply, build_app, dynamo_store, embedded_store, fast_retry,
    local_router, local_test_app, resources, send,
};

/// A resource with every part of an approval policy and a webhook provisioner holding a secret.
fn guarded() -> Value {
    json!({
        "name": "Production database",
        "description": "the primary",
        "max_duration": "PT8H",
        "require_ticket": true,
        "provisioner": {"kind": "webhook", "url": "https://hooks.example.com/grant", "secret": "provisioner-secret-0123456789"},
        "approvers": {"groups": ["dba"], "users": ["dana@example.com", "erin@example.com"]},
        "approvals_required": 2,
        "requesters": ["oncall"],
        "auto_approve": {"max_duration": "PT1H"},
    })
}

fn app() -> axum::Router {
    local_router(local_test_app().0)
}

async fn created(router: &axum::Router, id: &str) -> String {
    let reply = resources::put(router, id, &guarded(), None).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
    reply.etag.expect("a write answers its ETag")
}

fn assert_conflict(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        reply.json
    );
    assert_eq!(reply.json["error"]["code"], "version_conflict");
    assert!(reply.json["error"]["message"].as_str().is_some());
}

#[tokio::test]
async fn get_answers_an_etag_and_304_while_unchanged() {
    let router = app();
    let tag = created(&router, "prod-db").await;

    let read = resources::get(&router, "prod-db", None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.etag.as_deref(), Some(tag.as_str()));
    assert_eq!(read.json["approvals_required"], 2);

    let unchanged = resources::get(&router, "prod-db", Some(&tag)).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.etag.as_deref(), Some(tag.as_str()));
    assert_eq!(unchanged.json, Value::Null, "a 304 has no body");

    let edit = resources::patch(&router, "prod-db", &json!({"description": "moved"}), None).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.json);
    let changed = resources::get(&router, "prod-db", Some(&tag)).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.etag.as_deref(), Some(tag.as_str()));
    assert_eq!(changed.etag, edit.etag, "the write answered the new tag");
    assert_eq!(changed.json["description"], "moved");
}

#[tokio::test]
async fn get_takes_star_and_lists_in_if_none_match() {
    let router = app();
    let tag = created(&router, "prod-db").await;

    for sent in [format!("\"other\", {tag}"), "*".to_owned()] {
        let unchanged = resources::get(&router, "prod-db", Some(&sent)).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED, "{sent}");
        assert_eq!(unchanged.etag.as_deref(), Some(tag.as_str()));
        assert!(unchanged.text.is_empty(), "a 304 has no body");
    }
    let missing = resources::get(&router, "nope-db", Some("*")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["error"]["code"], "resource_not_found");
}

#[tokio::test]
async fn list_items_carry_the_tag_a_read_answers_and_a_stale_one_deletes_nothing() {
    let router = app();
    let tag = created(&router, "prod-db").await;

    let listed = resources::list(&router).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    assert_eq!(listed.json["items"][0]["id"], "prod-db");
    assert_eq!(listed.json["items"][0]["version"], tag.as_str());
    // Another admin edits the resource after this list was drawn.
    let edit = resources::patch(&router, "prod-db", &json!({"description": "moved"}), None).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.json);
    let relisted = resources::list(&router).await;
    assert_eq!(
        relisted.json["items"][0]["version"].as_str(),
        edit.etag.as_deref(),
        "the list follows the single read's tag"
    );
    assert!(
        !relisted.text.contains("provisioner-secret"),
        "a list never shows a secret"
    );

    let stale = resources::delete(
        &router,
        "prod-db",
        listed.json["items"][0]["version"].as_str(),
    )
    .await;

    assert_conflict(&stale);
    assert_eq!(
        stale.json["error"]["current_version"].as_str(),
        edit.etag.as_deref()
    );
    assert_eq!(
        resources::get(&router, "prod-db", None).await.json["description"],
        "moved",
        "nothing was deleted"
    );
    let current = resources::delete(
        &router,
        "prod-db",
        relisted.json["items"][0]["version"].as_str(),
    )
    .await;
    assert_eq!(current.status, StatusCode::NO_CONTENT, "{}", current.json);
}

#[tokio::test]
async fn a_put_on_a_stale_version_is_refused_with_the_current_resource_and_changes_nothing() {
    let router = app();
    let first = created(&router, "prod-db").await;
    let mut mine = guarded();
    mine["description"] = json!("first admin's edit");
    let saved = resources::put(&router, "prod-db", &mine, Some(&first)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.json);
    let second = saved.etag.expect("new tag");
    assert_ne!(second, first);

    // The second admin edited the version they opened: their save would erase the first admin's change.
    let mut theirs = guarded();
    theirs["name"] = json!("Prod DB");
    theirs["approvers"] = Value::Null;
    let refused = resources::put(&router, "prod-db", &theirs, Some(&first)).await;
    assert_conflict(&refused);
    assert_eq!(refused.json["error"]["current_version"], second.as_str());
    assert_eq!(refused.etag.as_deref(), Some(second.as_str()));
    let current = &refused.json["error"]["current"];
    assert_eq!(current["description"], "first admin's edit");
    assert_eq!(
        current["provisioner"]["secret"], "********",
        "the conflict shows no secret"
    );
    assert!(!refused.json.to_string().contains("provisioner-secret"));

    let read = resources::get(&router, "prod-db", None).await;
    assert_eq!(
        read.etag.as_deref(),
        Some(second.as_str()),
        "nothing written"
    );
    assert_eq!(read.json["name"], "Production database");
    assert_eq!(read.json["approvers"]["groups"], json!(["dba"]));

    // Made again on top of the version the conflict gave, it goes through.
    let retried = resources::put(&router, "prod-db", &theirs, Some(&second)).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.json);
}

#[tokio::test]
async fn a_put_without_if_match_still_replaces_whatever_is_stored() {
    let router = app();
    created(&router, "prod-db").await;
    let plain = json!({"name": "Prod", "provisioner": {"kind": "none"}});
    let replaced = resources::put(&router, "prod-db", &plain, None).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.json);
    assert!(replaced.json["approvers"].is_null() && replaced.json["requesters"].is_null());
    assert!(replaced.etag.is_some());
}

#[tokio::test]
async fn a_patch_changes_only_what_it_names_and_keeps_the_policy_and_the_secret() {
    let router = app();
    let tag = created(&router, "prod-db").await;
    let before = resources::get(&router, "prod-db", None).await.json;

    let patched = resources::patch(
        &router,
        "prod-db",
        &json!({"description": "only this"}),
        Some(&tag),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    let mut expected = before.clone();
    expected["description"] = json!("only this");
    assert_eq!(patched.json, expected, "every other field is as it was");

    // `null` removes an optional field; a nested object merges member by member.
    let patched = resources::patch(
        &router,
        "prod-db",
        &json!({"auto_approve": null, "approvers": {"users": ["dana@example.com"]}}),
        patched.etag.as_deref(),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    assert!(patched.json["auto_approve"].is_null());
    assert_eq!(
        patched.json["approvers"],
        json!({"groups": ["dba"], "users": ["dana@example.com"]})
    );
    assert_eq!(patched.json["requesters"], json!(["oncall"]));
}

#[tokio::test]
async fn a_patch_keeps_the_stored_provisioner_secret() {
    let (app, store, _) = local_test_app();
    let router = local_router(app);
    created(&router, "prod-db").await;
    let patched = resources::patch(&router, "prod-db", &json!({"name": "Renamed"}), None).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    let stored = store.get_resource("prod-db").await.unwrap().unwrap();
    match stored.provisioner {
        // The secret stays in the secret store: a patch neither drops it nor writes it into the table.
        Provisioner::Webhook { secret, .. } => assert!(secret.is_none(), "{secret:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_bad_patch_is_refused_like_a_bad_put_and_changes_nothing() {
    let router = app();
    let tag = created(&router, "prod-db").await;
    let cases = [
        // A well-formed patch whose result is no resource (an unknown field, a required one removed): the
        // patch breaks a rule of resources, so 422 and not "malformed".
        (
            json!({"colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_patch",
        ),
        (
            json!({"name": null}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_patch",
        ),
        (
            json!({"provisioner": {"kind": "ticket"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_patch",
        ),
        (
            json!({"approvals_required": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_approvals_required",
        ),
        (
            json!({"auto_approve": {"max_duration": "P30D"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_auto_approve",
        ),
        (
            json!({"id": "other-db"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "id_mismatch",
        ),
    ];
    for (patch, status, code) in cases {
        let reply = resources::patch(&router, "prod-db", &patch, Some(&tag)).await;
        assert_eq!(reply.status, status, "{patch}: {}", reply.json);
        assert_eq!(reply.json["error"]["code"], code, "{patch}");
    }
    let not_json = send(
        &router,
        "PATCH",
        "/v1/resources/prod-db",
        ADMIN,
        &[("content-type", "application/merge-patch+json")],
        Some("{\"name\":"),
    )
    .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.json["error"]["code"], "malformed_request");
    // A JSON Patch (RFC 6902) is another format: read as a merge patch it would mean something else.
    let json_patch = send(
        &router,
        "PATCH",
        "/v1/resources/prod-db",
        ADMIN,
        &[("content-type", "application/json-patch+json")],
        Some(r#"[{"op":"remove","path":"/approvers"}]"#),
    )
    .await;
    assert_eq!(json_patch.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json_patch.json["error"]["code"], "unsupported_media_type");

    let read = resources::get(&router, "prod-db", Some(&tag)).await;
    assert_eq!(read.status, StatusCode::NOT_MODIFIED, "nothing was written");
}

#[tokio::test]
async fn only_an_admin_may_patch_and_a_missing_resource_is_404() {
    let router = app();
    let tag = created(&router, "prod-db").await;
    let refused = send(
        &router,
        "PATCH",
        "/v1/resources/prod-db",
        APPROVER,
        &[("content-type", "application/merge-patch+json")],
        Some(r#"{"requesters":null}"#),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json["error"]["code"], "not_an_admin");
    let missing = resources::patch(&router, "no-db", &json!({"name": "x"}), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["error"]["code"], "resource_not_found");
    let still = resources::get(&router, "prod-db", Some(&tag)).await;
    assert_eq!(still.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_delete_on_a_stale_version_is_refused_and_the_resource_stays() {
    let router = app();
    let first = created(&router, "prod-db").await;
    let edit = resources::patch(&router, "prod-db", &json!({"description": "x"}), None).await;
    let refused = resources::delete(&router, "prod-db", Some(&first)).await;
    assert_conflict(&refused);
    assert_eq!(
        refused.json["error"]["current_version"],
        edit.etag.as_deref().unwrap()
    );
    assert_eq!(
        resources::get(&router, "prod-db", None).await.status,
        StatusCode::OK
    );
    let deleted = resources::delete(&router, "prod-db", edit.etag.as_deref()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    // Gone: a write that names the version it read is told so, with nothing current.
    let late = resources::put(&router, "prod-db", &guarded(), edit.etag.as_deref()).await;
    assert_conflict(&late);
    assert!(late.json["error"]["current"].is_null());
    assert!(late.json["error"]["current_version"].is_null());
}

#[tokio::test]
async fn a_resource_deleted_and_made_again_does_not_match_the_old_tag() {
    let router = app();
    let old = created(&router, "prod-db").await;
    assert_eq!(
        resources::delete(&router, "prod-db", None).await.status,
        StatusCode::NO_CONTENT
    );
    let mut other = guarded();
    other["description"] = json!("another resource under the same id");
    let again = resources::put(&router, "prod-db", &other, None).await;
    assert_eq!(again.status, StatusCode::CREATED);
    let stale = resources::patch(&router, "prod-db", &json!({"name": "x"}), Some(&old)).await;
    assert_conflict(&stale);
}

#[tokio::test]
async fn if_none_match_star_only_creates() {
    let router = app();
    let create_only = |body: Value| async {
        let body = body;
        send(
            &router,
            "PUT",
            "/v1/resources/new-db",
            ADMIN,
            &[("content-type", "application/json"), ("if-none-match", "*")],
            Some(&body.to_string()),
        )
        .await
    };
    let first = create_only(guarded()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    let second = create_only(json!({"name": "x", "provisioner": {"kind": "none"}})).await;
    assert_conflict(&second);
    assert_eq!(
        second.json["error"]["current"]["name"],
        "Production database"
    );
}

fn resource(id: &str, description: &str) -> Resource {
    Resource {
        id: id.into(),
        name: "Race".into(),
        description: description.into(),
        max_duration: None,
        require_ticket: false,
        provisioner: Provisioner::None,
        policy: Default::default(),
    }
}

/// Writers that all read version `v` write at once: exactly one wins, the others get `Conflict`, and the
/// stored resource is the winner's at `v + 1`.
async fn racing_writers_at_one_version_let_one_win(store: Arc<dyn GrantStore>) {
    store
        .put_resource(&resource("race-db", "seed"))
        .await
        .unwrap();
    let read = store
        .get_resource_versioned("race-db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.version, 1);
    let writes = (0..8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let r = resource("race-db", &format!("writer {n}"));
            (
                n,
                store
                    .put_resource_if(&r, ResourceExpected::Version(1))
                    .await,
            )
        })
    });
    let mut winners = Vec::new();
    for write in writes.collect::<Vec<_>>() {
        match write.await.unwrap() {
            (n, Ok(version)) => winners.push((n, version)),
            (_, Err(StoreError::Conflict)) => {}
            (_, Err(e)) => panic!("{e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let (winner, version) = winners[0];
    assert_eq!(version, 2);
    let stored = store
        .get_resource_versioned("race-db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.resource.description, format!("writer {winner}"));

    // Creating: one of two creators of one id wins.
    let creators = ["a", "b"].map(|d| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .put_resource_if(&resource("fresh-db", d), ResourceExpected::Absent)
                .await
        })
    });
    let mut created = 0;
    for creator in creators {
        match creator.await.unwrap() {
            Ok(1) => created += 1,
            Err(StoreError::Conflict) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 1);

    // A delete at a stale version deletes nothing; at the stored one it does.
    assert!(matches!(
        store.delete_resource_if("race-db", 1).await,
        Err(StoreError::Conflict)
    ));
    store.delete_resource_if("race-db", 2).await.unwrap();
    assert!(store.get_resource("race-db").await.unwrap().is_none());
    // An unconditional write goes on counting from what is stored.
    store
        .put_resource(&resource("fresh-db", "again"))
        .await
        .unwrap();
    let bumped = store
        .get_resource_versioned("fresh-db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bumped.version, 2);
}

#[tokio::test]
async fn embedded_racing_writers_at_one_version_let_one_win() {
    racing_writers_at_one_version_let_one_win(Arc::new(embedded_store())).await;
}

#[tokio::test]
async fn dynamodb_racing_writers_at_one_version_let_one_win() {
    racing_writers_at_one_version_let_one_win(Arc::new(dynamo_store().await)).await;
}

/// Admins saving edits of one version through the API at the same moment: one is saved, every other one is
/// told `version_conflict`, and no edit is lost without its author knowing.
async fn racing_admins_through_the_api(app: Ticketbound) {
    let router = local_router(app);
    let tag = created(&router, "prod-db").await;
    let saves = (0..6).map(|n| {
        let (router, tag) = (router.clone(), tag.clone());
        tokio::spawn(async move {
            let patch = json!({"description": format!("admin {n}")});
            (
                n,
                resources::patch(&router, "prod-db", &patch, Some(&tag)).await,
            )
        })
    });
    let mut saved = Vec::new();
    for save in saves.collect::<Vec<_>>() {
        let (n, reply) = save.await.unwrap();
        match reply.status {
            StatusCode::OK => saved.push(n),
            _ => assert_conflict(&reply),
        }
    }
    assert_eq!(saved.len(), 1, "{saved:?}");
    let read = resources::get(&router, "prod-db", None).await;
    assert_eq!(read.json["description"], format!("admin {}", saved[0]));
    assert_eq!(read.json["approvers"]["groups"], json!(["dba"]));
}

#[tokio::test]
async fn embedded_racing_admins_through_the_api() {
    racing_admins_through_the_api(local_test_app().0).await;
}

#[tokio::test]
async fn dynamodb_racing_admins_through_the_api() {
    let app = build_app(AppParts {
        store: Arc::new(dynamo_store().await),
        // Nothing is scheduled here: resource writes only.
        scheduler: Arc::new(LocalScheduler::new(embedded_store())),
        clock: Arc::new(SystemClock),
        retry: fast_retry(4),
        provisioner_timeout: Duration::from_secs(2),
    });
    racing_admins_through_the_api(app).await;
}

#[tokio::test]
async fn a_dynamodb_resource_stored_before_versions_reads_as_version_1() {
    let config = ticketbound_tests::moto_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = ticketbound_tests::unique("legacy");
    ticketbound::adapters::dynamodb::DynamoStore::create_table(&client, &table)
        .await
        .unwrap();
    // The item as the release before versions wrote it: no `version` attribute.
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned());
    client
        .put_item()
        .table_name(&table)
        .item("pk", s("RESOURCE#old-db"))
        .item("sk", s("#RESOURCE"))
        .item("gsi5pk", s("RESOURCES"))
        .item("gsi5sk", s("old-db"))
        .item(
            "doc",
            s(r#"{"id":"old-db","name":"Old","provisioner":{"kind":"none"}}"#),
        )
        .send()
        .await
        .unwrap();
    let store = ticketbound::adapters::dynamodb::DynamoStore::new(client, table);
    let read = store
        .get_resource_versioned("old-db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.version, 1);
    let edited = resource("old-db", "edited");
    assert!(matches!(
        store
            .put_resource_if(&edited, ResourceExpected::Version(2))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store
            .put_resource_if(&edited, ResourceExpected::Version(1))
            .await
            .unwrap(),
        2
    );
    assert!(matches!(
        store
            .put_resource_if(&edited, ResourceExpected::Version(1))
            .await,
        Err(StoreError::Conflict)
    ));
}

#[tokio::test]
async fn the_conditional_headers_read_as_http_defines_them() {
    let router = app();
    let tag = created(&router, "prod-db").await;
    // `If-None-Match` on a read compares weakly, and takes a list or `*`.
    for held in [
        format!("W/{tag}"),
        format!("\"other\", {tag}"),
        "*".to_owned(),
    ] {
        let read = resources::get(&router, "prod-db", Some(&held)).await;
        assert_eq!(read.status, StatusCode::NOT_MODIFIED, "{held}");
    }
    assert_eq!(
        resources::get(&router, "prod-db", Some("\"other\""))
            .await
            .status,
        StatusCode::OK
    );
    // `If-Match` compares strongly: a weak tag never matches.
    let weak = resources::patch(
        &router,
        "prod-db",
        &json!({"name": "x"}),
        Some(&format!("W/{tag}")),
    )
    .await;
    assert_conflict(&weak);
    // `If-Match: *` is "if it exists".
    let exists = resources::patch(&router, "prod-db", &json!({"name": "Renamed"}), Some("*")).await;
    assert_eq!(exists.status, StatusCode::OK, "{}", exists.json);
    let missing = resources::put(&router, "no-db", &guarded(), Some("*")).await;
    assert_conflict(&missing);
    assert_eq!(
        resources::get(&router, "no-db", None).await.status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );
    // A write's `If-None-Match` other than `*` is refused rather than ignored.
    let odd = send(
        &router,
        "PUT",
        "/v1/resources/prod-db",
        ADMIN,
        &[
            ("content-type", "application/json"),
            ("if-none-match", tag.as_str()),
        ],
        Some(&guarded().to_string()),
    )
    .await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST);
    assert_eq!(odd.json["error"]["code"], "unsupported_precondition");
    // A merge patch sent as plain JSON is read the same way.
    let plain = send(
        &router,
        "PATCH",
        "/v1/resources/prod-db",
        ADMIN,
        &[("content-type", "application/json; charset=utf-8")],
        Some(r#"{"description": "plain JSON"}"#),
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.json);
    assert_eq!(plain.json["name"], "Renamed");
    assert_eq!(plain.json["description"], "plain JSON");
}
