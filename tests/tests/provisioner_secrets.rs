//! A resource's provisioner as an admin sets it. A `webhook` provisioner's signing secret lives in the secret
//! store, never with the resource: whoever can read the local database file or the DynamoDB table must not be
//! able to sign `grant` calls. Through the router, as an admin and an approver would: the store holds no secret,
//! the provisioner call is still signed with the right one, a resource stored with its secret in clear (before)
//! is moved at start, and the local data folder is readable by its owner only. And what is sent is kept as
//! meant or refused: a `none` provisioner with other fields, a URL with a query or a fragment.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

use ticketbound::adapters::dynamodb::DynamoStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::provisioner::verify_signature_header;
use ticketbound::adapters::secrets::SecretsManagerStore;
use ticketbound::ports::SystemClock;
use ticketbound::service::{Ports, Settings, Ticketbound};
use ticketbound_tests::*;

/// What `define_webhook_resource` sends as the secret.
const SECRET: &str = "provisioner-secret-0123456789";
/// The secret of a resource written by an older version, in clear.
const OLD_SECRET: &str = "old-clear-provisioner-secret-42";

/// Requests `resource` as Alice and approves it; returns the grant id. Approval calls the provisioner.
async fn approved_grant(router: &Router, resource: &str) -> String {
    let id = request_grant(router, ALICE, resource, "PT1H").await;
    let (status, body) = call(
        router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    id
}

/// The provisioner received exactly one call, for `grant`, signed with `secret` (and not with another).
async fn assert_signed_with(provisioner: &wiremock::MockServer, grant: &str, secret: &str) {
    let requests = provisioner.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one provisioner call");
    let header = requests[0]
        .headers
        .get("x-ticketbound-signature")
        .expect("signed")
        .to_str()
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        verify_signature_header(secret, header, &requests[0].body, now, 300),
        "signed with the resource's secret"
    );
    assert!(!verify_signature_header(
        "some-other-secret-0123456789",
        header,
        &requests[0].body,
        now,
        300
    ));
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        (body["action"].as_str(), body["grant"]["id"].as_str()),
        (Some("grant"), Some(grant))
    );
}

/// The files of the local data folder other than the secret file, by name, with whether each holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("secrets.json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let holds = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        found.push((name, holds));
    }
    found.sort();
    found
}

fn secret_file(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("secrets.json")).expect("secret file")).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_database_file_holds_no_provisioner_secret_and_calls_are_still_signed() {
    let provisioner = provisioner_ok().await;
    let app = spawn_app_on_disk(quick_policy()).await;
    define_webhook_resource(&app.router, "vault", &provisioner.uri()).await;

    let grant = approved_grant(&app.router, "vault").await;

    assert_signed_with(&provisioner, &grant, SECRET).await;
    let files = files_holding(&app.dir, SECRET);
    assert!(
        files.iter().any(|(name, _)| name == "ticketbound.db"),
        "{files:?}"
    );
    assert!(
        files.iter().all(|(_, holds)| !holds),
        "a store file holds the provisioner secret: {files:?}"
    );
    assert_eq!(secret_file(&app.dir)["_provisioners"]["vault"], SECRET);
    // Read back, the API still shows the mask.
    let (_, resource) = call(&app.router, "GET", "/v1/resources/vault", ADMIN, None).await;
    assert_eq!(resource["provisioner"]["secret"], "********");
}

#[tokio::test]
async fn sending_the_mask_back_keeps_the_secret_and_a_new_one_replaces_it() {
    let provisioner = provisioner_ok().await;
    let app = spawn_app_on_disk(quick_policy()).await;
    define_webhook_resource(&app.router, "vault", &provisioner.uri()).await;
    let (_, mut resource) = call(&app.router, "GET", "/v1/resources/vault", ADMIN, None).await;
    resource["name"] = "Renamed".into();
    let (status, body) = call(
        &app.router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&resource.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grant = approved_grant(&app.router, "vault").await;
    assert_signed_with(&provisioner, &grant, SECRET).await;

    resource["provisioner"]["secret"] = "a-rotated-secret-0123456789".into();
    let (status, body) = call(
        &app.router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&resource.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        secret_file(&app.dir)["_provisioners"]["vault"],
        "a-rotated-secret-0123456789"
    );

    // Another kind of provisioner, or no resource at all: no secret is left behind.
    resource["provisioner"] = json!({"kind": "none"});
    let (status, body) = call(
        &app.router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&resource.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        secret_file(&app.dir)["_provisioners"]
            .get("vault")
            .is_none()
    );
}

#[tokio::test]
async fn deleting_a_resource_deletes_its_provisioner_secret() {
    let app = spawn_app_on_disk(quick_policy()).await;
    define_webhook_resource(&app.router, "vault", "https://hooks.example.com/p").await;
    assert_eq!(secret_file(&app.dir)["_provisioners"]["vault"], SECRET);
    let (status, body) = call(&app.router, "DELETE", "/v1/resources/vault", ADMIN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        secret_file(&app.dir)["_provisioners"]
            .get("vault")
            .is_none()
    );
}

/// Writes a resource the way versions that kept the secret with it did, straight into the database file.
fn store_resource_with_clear_secret(db: &Path, id: &str, url: &str) {
    let doc = json!({
        "id": id, "name": "Old vault", "description": "", "max_duration": null, "require_ticket": false,
        "provisioner": {"kind": "webhook", "url": url, "secret": OLD_SECRET},
    });
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "INSERT INTO resources (id, doc) VALUES (?1, ?2)",
        rusqlite::params![id, doc.to_string()],
    )
    .unwrap();
}

#[tokio::test]
async fn a_resource_stored_with_its_secret_in_clear_is_moved_to_the_secret_file_at_start() {
    let provisioner = provisioner_ok().await;
    let dir = temp_dir("moved");
    drop(ticketbound::wiring::local_app(&dir, Settings::default()).expect("first start"));
    store_resource_with_clear_secret(&dir.join("ticketbound.db"), "vault", &provisioner.uri());
    assert!(
        files_holding(&dir, OLD_SECRET)
            .iter()
            .any(|(_, holds)| *holds),
        "the old layout holds the secret in clear"
    );

    // Twice: a start after a start that was cut short, or after one that finished, changes nothing more.
    for _ in 0..2 {
        let (app, _) = ticketbound::wiring::local_app(&dir, Settings::default()).expect("start");
        drop(app);
        let files = files_holding(&dir, OLD_SECRET);
        assert!(
            files.iter().all(|(_, holds)| !holds),
            "a store file still holds the secret after the move: {files:?}"
        );
        assert_eq!(secret_file(&dir)["_provisioners"]["vault"], OLD_SECRET);
    }

    let (app, _) = ticketbound::wiring::local_app(&dir, Settings::default()).expect("start");
    let router = local_router(app);
    let (_, resource) = call(&router, "GET", "/v1/resources/vault", ADMIN, None).await;
    assert_eq!(resource["provisioner"]["secret"], "********", "{resource}");
    let grant = approved_grant(&router, "vault").await;
    assert_signed_with(&provisioner, &grant, OLD_SECRET).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[tokio::test]
async fn a_fresh_data_folder_is_0700_with_0600_files_and_an_old_one_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let parent = temp_dir("modes");
    let dir = parent.join("data");
    let (app, _) = ticketbound::wiring::local_app(&dir, Settings::default()).expect("start");
    let router = local_router(app);
    define_webhook_resource(&router, "vault", "https://hooks.example.com/p").await;
    assert_eq!(mode(&dir), 0o700, "the data folder");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    names.sort();
    for expected in [
        "secrets.json",
        "ticketbound.db",
        "ticketbound.db-shm",
        "ticketbound.db-wal",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    drop(router);

    // A folder made by an older version: open to everyone on the machine. (Closing the database removed its
    // `-wal` and `-shm` files; an empty `-wal` stands for one left by a crash.)
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("ticketbound.db-wal"), b"").unwrap();
    let old = ["ticketbound.db", "ticketbound.db-wal", "secrets.json"];
    for name in old {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (app, _) = ticketbound::wiring::local_app(&dir, Settings::default()).expect("restart");
    assert_eq!(mode(&dir), 0o700);
    for name in old {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    drop(app);
    let _ = std::fs::remove_dir_all(&parent);
}

/// The application as the Lambda functions build it: DynamoDB and Secrets Manager on moto (a table and a
/// secret prefix of its own). Also returns the raw clients, the table and the prefix.
async fn aws_app() -> (
    Ticketbound,
    aws_sdk_dynamodb::Client,
    String,
    aws_sdk_secretsmanager::Client,
    String,
) {
    let config = aws().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let table = unique("prov-secrets");
    DynamoStore::create_table(&dynamo, &table)
        .await
        .expect("table");
    let store = Arc::new(DynamoStore::new(dynamo.clone(), table.clone()));
    let secrets_client = aws_sdk_secretsmanager::Client::new(&config);
    let prefix = format!("{}/", unique("tb-prov"));
    let ports = Ports {
        secrets: Arc::new(SecretsManagerStore::new(
            secrets_client.clone(),
            prefix.clone(),
            Duration::from_secs(30),
        )),
        ..test_ports(
            store.clone(),
            Arc::new(LocalScheduler::new(embedded_store())),
            Arc::new(SystemClock),
            Duration::from_secs(2),
        )
    };
    let app = Ticketbound::build(ports, Settings::default());
    (app, dynamo, table, secrets_client, prefix)
}

/// Every item of `table`, as text.
async fn table_text(client: &aws_sdk_dynamodb::Client, table: &str) -> String {
    let items = client
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default();
    assert!(!items.is_empty());
    format!("{items:?}")
}

async fn secret_value(client: &aws_sdk_secretsmanager::Client, name: &str) -> String {
    client
        .get_secret_value()
        .secret_id(name)
        .send()
        .await
        .expect("the secret exists")
        .secret_string()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn on_aws_the_table_holds_no_provisioner_secret_and_calls_are_signed() {
    let provisioner = provisioner_ok().await;
    let (app, dynamo, table, secrets, prefix) = aws_app().await;
    let router = local_router(app);
    define_webhook_resource(&router, "vault", &provisioner.uri()).await;

    let grant = approved_grant(&router, "vault").await;

    assert_signed_with(&provisioner, &grant, SECRET).await;
    let items = table_text(&dynamo, &table).await;
    assert!(items.contains("RESOURCE#vault"), "{items}");
    assert!(
        !items.contains(SECRET),
        "the table holds the secret: {items}"
    );
    assert_eq!(
        secret_value(&secrets, &format!("{prefix}_provisioners/vault")).await,
        SECRET
    );
}

#[tokio::test]
async fn on_aws_a_resource_stored_with_its_secret_in_clear_is_moved_at_start() {
    let provisioner = provisioner_ok().await;
    let (app, dynamo, table, secrets, prefix) = aws_app().await;
    let s = |v: String| aws_sdk_dynamodb::types::AttributeValue::S(v);
    let doc = json!({
        "id": "vault", "name": "Old vault", "description": "", "max_duration": null, "require_ticket": false,
        "provisioner": {"kind": "webhook", "url": provisioner.uri(), "secret": OLD_SECRET},
    });
    dynamo
        .put_item()
        .table_name(&table)
        .item("pk", s("RESOURCE#vault".into()))
        .item("sk", s("#RESOURCE".into()))
        .item("gsi5pk", s("RESOURCES".into()))
        .item("gsi5sk", s("vault".into()))
        .item("doc", s(doc.to_string()))
        .send()
        .await
        .expect("an item as older versions wrote it");

    ticketbound::wiring::move_provisioner_secrets_at_start(&app).await;
    ticketbound::wiring::move_provisioner_secrets_at_start(&app).await;

    let items = table_text(&dynamo, &table).await;
    assert!(items.contains("RESOURCE#vault"), "{items}");
    assert!(
        !items.contains(OLD_SECRET),
        "the table holds the secret: {items}"
    );
    assert_eq!(
        secret_value(&secrets, &format!("{prefix}_provisioners/vault")).await,
        OLD_SECRET
    );
    let router = local_router(app);
    let grant = approved_grant(&router, "vault").await;
    assert_signed_with(&provisioner, &grant, OLD_SECRET).await;
}

/// PUTs `vault` with `provisioner`; the answer.
async fn put_vault(router: &Router, provisioner: Value) -> (StatusCode, Value) {
    let body = json!({"name": "Vault", "provisioner": provisioner});
    call(
        router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&body.to_string()),
    )
    .await
}

#[tokio::test]
async fn a_none_provisioner_with_a_url_or_secret_is_refused_not_silently_dropped() {
    let app = spawn_app_on_disk(quick_policy()).await;
    for provisioner in [
        json!({"kind": "none", "url": "https://hooks.example.com/p"}),
        json!({"kind": "none", "secret": SECRET}),
        json!({"kind": "none", "url": "https://hooks.example.com/p", "secret": SECRET}),
    ] {
        let (status, body) = put_vault(&app.router, provisioner.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{provisioner}: {body}");
        assert_eq!(body["error"]["code"], "malformed_request", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("unknown field"), "{message}");
    }
    let (status, _) = call(&app.router, "GET", "/v1/resources/vault", ADMIN, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    assert!(!app.dir.join("secrets.json").exists(), "no secret was kept");

    let (status, body) = put_vault(&app.router, json!({"kind": "none"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn provisioner_urls_are_kept_normalised_and_a_query_or_fragment_is_refused() {
    let app = spawn_app_on_disk(quick_policy()).await;
    let (status, body) = put_vault(
        &app.router,
        json!({"kind": "webhook", "url": "  HTTPS://Hooks.Example.COM:443/grant access  ", "secret": SECRET}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["provisioner"]["url"],
        "https://hooks.example.com/grant%20access"
    );
    let (_, read) = call(&app.router, "GET", "/v1/resources/vault", ADMIN, None).await;
    assert_eq!(
        read["provisioner"]["url"],
        "https://hooks.example.com/grant%20access"
    );

    for url in [
        "https://hooks.example.com/p?x=1",
        "https://hooks.example.com/p#frag",
        "https://hooks.example.com/p?",
    ] {
        let (status, body) = put_vault(
            &app.router,
            json!({"kind": "webhook", "url": url, "secret": "another-secret-0123456789"}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["error"]["code"], "invalid_url", "{body}");
        let (_, after) = call(&app.router, "GET", "/v1/resources/vault", ADMIN, None).await;
        assert_eq!(
            after, read,
            "a refused change leaves the resource as it was"
        );
        assert_eq!(
            secret_file(&app.dir)["_provisioners"]["vault"],
            SECRET,
            "and its secret"
        );
    }
}
