//! The `ConnectionStore` contract, run against the embedded store and DynamoDB (moto): both behave the same.

mod support;

use time::OffsetDateTime;

use ticketbound::adapters::dynamodb::DynamoStore;
use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::domain::connection::{
    AuthMethod, AuthState, AuthStatus, ClosedStatuses, Connection, ConnectionKind,
    ConnectionSettings, MissedClosing, WebhookActivity,
};
use ticketbound::ports::{ConnectionStore, StoreError};

fn connection(id: &str) -> Connection {
    let at = OffsetDateTime::from_unix_timestamp(1_760_000_000).unwrap();
    Connection {
        settings: ConnectionSettings {
            id: id.into(),
            kind: ConnectionKind::Freshservice,
            base_url: "https://acme.freshservice.com".into(),
            auth_method: AuthMethod::ApiKey,
            email: None,
            username: None,
            closed_statuses: ticketbound::adapters::ticket_systems::rules(
                ConnectionKind::Freshservice,
            )
            .default_closed_statuses(),
            webhook_secrets_active: 1,
            created_at: at,
            updated_at: at,
            audit: None,
            people: Default::default(),
        },
        auth: AuthState::new(),
        webhook: WebhookActivity::default(),
    }
}

async fn contract(store: &dyn ConnectionStore) {
    let a = connection("conn-a");
    store.insert_connection(&a).await.unwrap();
    assert!(matches!(
        store.insert_connection(&a).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.get_connection("conn-a").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.get_connection("nope").await.unwrap(), None);

    // Settings and status change independently.
    let mut settings = a.settings.clone();
    settings.closed_statuses = ClosedStatuses::Numbers(vec![5]);
    // Audit settings (DESIGN §8) are kept with the settings.
    settings.audit = Some(ticketbound::domain::ticket_writes::AuditSettings {
        group_id: Some(5),
        priority: Some(3),
        ..Default::default()
    });
    assert!(store.update_settings(&settings).await.unwrap());
    let auth = AuthState::new().auth_failed("HTTP 401");
    assert!(store.update_auth("conn-a", &auth).await.unwrap());
    let read = store.get_connection("conn-a").await.unwrap().unwrap();
    assert_eq!(read.settings, settings);
    assert_eq!(read.auth, auth);
    assert_eq!(read.auth.status, AuthStatus::NeedsReauthorization);
    assert!(
        !store.update_auth("nope", &auth).await.unwrap(),
        "no upsert of a deleted connection"
    );
    assert!(
        !store
            .update_settings(&connection("nope").settings)
            .await
            .unwrap()
    );
    assert_eq!(store.get_connection("nope").await.unwrap(), None);

    // Webhook activity: each part written on its own, never touching settings or status, never creating a
    // connection.
    let delivered = OffsetDateTime::from_unix_timestamp(1_760_000_100).unwrap();
    assert!(store.record_delivery("conn-a", delivered).await.unwrap());
    let missed = MissedClosing {
        at: OffsetDateTime::from_unix_timestamp(1_760_000_200).unwrap(),
        ticket: "SEC-42".into(),
    };
    assert!(
        store
            .record_missed_closing("conn-a", &missed)
            .await
            .unwrap()
    );
    let later = OffsetDateTime::from_unix_timestamp(1_760_000_300).unwrap();
    assert!(store.record_delivery("conn-a", later).await.unwrap());
    let read = store.get_connection("conn-a").await.unwrap().unwrap();
    assert_eq!(
        read.webhook,
        WebhookActivity {
            last_delivery_at: Some(later),
            last_missed_closing: Some(missed.clone()),
        }
    );
    assert_eq!((read.settings, read.auth), (settings.clone(), auth.clone()));
    assert!(!store.record_delivery("nope", delivered).await.unwrap());
    assert!(!store.record_missed_closing("nope", &missed).await.unwrap());
    assert_eq!(store.get_connection("nope").await.unwrap(), None);
    // A status write leaves the activity alone.
    assert!(
        store
            .update_auth("conn-a", &AuthState::new())
            .await
            .unwrap()
    );
    let read = store.get_connection("conn-a").await.unwrap().unwrap();
    assert_eq!(read.webhook.last_delivery_at, Some(later));

    // Listing pages by id, each connection exactly once.
    for id in ["conn-c", "conn-b"] {
        store.insert_connection(&connection(id)).await.unwrap();
    }
    let first = store.list_connections(2, None).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let mut ids: Vec<String> = first.items.iter().map(|c| c.settings.id.clone()).collect();
    let mut cursor = first.next;
    while let Some(c) = cursor {
        let page = store.list_connections(2, Some(&c)).await.unwrap();
        ids.extend(page.items.iter().map(|c| c.settings.id.clone()));
        cursor = page.next;
    }
    assert_eq!(ids, ["conn-a", "conn-b", "conn-c"]);
    assert!(matches!(
        store.list_connections(2, Some("junk!")).await,
        Err(StoreError::InvalidCursor)
    ));

    assert!(store.delete_connection("conn-a").await.unwrap());
    assert!(!store.delete_connection("conn-a").await.unwrap());
    assert_eq!(store.get_connection("conn-a").await.unwrap(), None);
    // A connection created again under the id starts with no webhook history.
    store.insert_connection(&a).await.unwrap();
    assert_eq!(
        store
            .get_connection("conn-a")
            .await
            .unwrap()
            .unwrap()
            .webhook,
        WebhookActivity::default()
    );
}

#[tokio::test]
async fn the_embedded_store_keeps_connections() {
    contract(&EmbeddedStore::in_memory().unwrap()).await;
}

#[tokio::test]
async fn the_dynamodb_store_keeps_connections() {
    let sdk = support::aws().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("tb-conn-{}", &ticketbound::domain::ids::new_secret()[..12]);
    DynamoStore::create_table(&client, &table).await.unwrap();
    contract(&DynamoStore::new(client.clone(), &table)).await;
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}
