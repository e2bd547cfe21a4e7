//! The Secrets Manager secret store against moto: one secret per connection under the prefix, JSON values,
//! a short per-container cache, deletion without a recovery window.

mod support;

use std::time::Duration;

use ticketbound::adapters::secrets::SecretsManagerStore;
use ticketbound::domain::connection::{AuthMethod, ConnectionSecrets, Credentials};
use ticketbound::domain::secret::Secret;
use ticketbound::ports::SecretStore;

fn secrets(token: &str, webhooks: &[&str]) -> ConnectionSecrets {
    ConnectionSecrets {
        credentials: Credentials::new(AuthMethod::ApiToken, Secret::new(token)),
        webhook_secrets: webhooks.iter().map(|w| Secret::new(*w)).collect(),
    }
}

async fn store(ttl: Duration) -> (SecretsManagerStore, aws_sdk_secretsmanager::Client) {
    let sdk = support::aws().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let prefix = format!("tb-test-{}/", &ticketbound::domain::ids::new_secret()[..12]);
    (
        SecretsManagerStore::new(client.clone(), prefix, ttl),
        client,
    )
}

#[tokio::test]
async fn secrets_are_created_read_replaced_and_deleted() {
    let (store, client) = store(Duration::ZERO).await;
    assert_eq!(store.get("jira-main").await.unwrap(), None);
    store
        .put("jira-main", &secrets("tok-1", &["wh-1"]))
        .await
        .unwrap();
    assert_eq!(
        store.get("jira-main").await.unwrap(),
        Some(secrets("tok-1", &["wh-1"]))
    );

    // One secret per connection, named under the prefix, holding JSON.
    let raw = client
        .get_secret_value()
        .secret_id(store.secret_name("jira-main"))
        .send()
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(raw.secret_string().unwrap()).unwrap();
    assert_eq!(value["credential"], "tok-1");
    assert_eq!(value["method"], "api_token");

    store
        .put("jira-main", &secrets("tok-2", &["wh-1", "wh-2"]))
        .await
        .unwrap();
    assert_eq!(
        store.get("jira-main").await.unwrap(),
        Some(secrets("tok-2", &["wh-1", "wh-2"]))
    );

    store.delete("jira-main").await.unwrap();
    store.delete("jira-main").await.unwrap();
    assert_eq!(store.get("jira-main").await.unwrap(), None);
    // No recovery window: the same id can be used again at once.
    store
        .put("jira-main", &secrets("tok-3", &["wh-3"]))
        .await
        .unwrap();
    assert_eq!(
        store.get("jira-main").await.unwrap(),
        Some(secrets("tok-3", &["wh-3"]))
    );
    store.delete("jira-main").await.unwrap();
}

#[tokio::test]
async fn reads_are_cached_for_a_short_time_only() {
    let (store, client) = store(Duration::from_millis(500)).await;
    store.put("fs", &secrets("old", &["wh"])).await.unwrap();
    assert_eq!(
        store.get("fs").await.unwrap(),
        Some(secrets("old", &["wh"]))
    );
    // Another container rotates the secret.
    client
        .put_secret_value()
        .secret_id(store.secret_name("fs"))
        .secret_string(secrets("new", &["wh"]).to_storage_json())
        .send()
        .await
        .unwrap();
    assert_eq!(
        store.get("fs").await.unwrap(),
        Some(secrets("old", &["wh"])),
        "cached"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.get("fs").await.unwrap(),
        Some(secrets("new", &["wh"])),
        "refreshed after the TTL"
    );
    store.delete("fs").await.unwrap();
}

#[tokio::test]
async fn an_unreadable_secret_is_an_error_that_does_not_quote_it() {
    let (store, client) = store(Duration::ZERO).await;
    client
        .create_secret()
        .name(store.secret_name("broken"))
        .secret_string("{\"credential\": \"hunter2\"")
        .send()
        .await
        .unwrap();
    let err = store.get("broken").await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    store.delete("broken").await.unwrap();
}
