//! The `ConnectionStore` contract: the embedded (SQLite) store and the DynamoDB store (on moto) pass the same
//! named cases, each with a fresh store. (Moved from `connections_store_contract.rs`, where it was one function
//! per store.)

use std::sync::Arc;

use time::OffsetDateTime;

use ticketbound::domain::connection::{
    AuthMethod, AuthState, AuthStatus, ClosedStatuses, Connection, ConnectionKind,
    ConnectionSettings, MissedClosing, WebhookActivity,
};
use ticketbound::ports::{ConnectionStore, StoreError};
use ticketbound_tests::{dynamo_store, embedded_store};

fn connection(id: &str) -> Connection {
    let at = OffsetDateTime::from_unix_timestamp(1_760_000_000).unwrap();
    Connection {
        settings: ConnectionSettings {
            id: id.into(),
            kind: ConnectionKind::Freshservice,
            base_url: "https://acme.freshservice.com".into(),
            auth_method: AuthMethod::ApiKey,
            closed_statuses: ticketbound::adapters::ticket_systems::rules(
                ConnectionKind::Freshservice,
            )
            .default_closed_statuses(),
            webhook_secrets_active: 1,
            created_at: at,
            updated_at: at,
            audit: None,
            people: Default::default(),
            fields: Default::default(),
        },
        auth: AuthState::new(),
        webhook: WebhookActivity::default(),
    }
}

async fn stored(store: &dyn ConnectionStore, id: &str) -> Connection {
    let connection = connection(id);
    store.insert_connection(&connection).await.unwrap();
    connection
}

mod suite {
    use super::*;

    pub async fn a_connection_reads_back_and_inserting_it_twice_is_refused(
        store: Arc<dyn ConnectionStore>,
    ) {
        let a = stored(&*store, "conn-a").await;

        let again = store.insert_connection(&a).await;

        assert!(matches!(again, Err(StoreError::AlreadyExists)), "{again:?}");
        assert_eq!(
            store.get_connection("conn-a").await.unwrap(),
            Some(a.clone())
        );
        assert_eq!(store.get_connection("nope").await.unwrap(), None);
    }

    pub async fn settings_and_status_change_independently_and_never_create_a_connection(
        store: Arc<dyn ConnectionStore>,
    ) {
        let a = stored(&*store, "conn-a").await;
        let mut settings = a.settings.clone();
        settings.closed_statuses = ClosedStatuses::Numbers(vec![5]);
        // Audit settings (DESIGN §8) are kept with the settings.
        settings.audit = Some(ticketbound::domain::ticket_writes::AuditSettings {
            group_id: Some(5),
            priority: Some(3),
            ..Default::default()
        });
        let auth = AuthState::new().auth_failed("HTTP 401");

        assert!(store.update_settings(&settings).await.unwrap());
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
    }

    pub async fn webhook_activity_is_written_on_its_own_and_never_creates_a_connection(
        store: Arc<dyn ConnectionStore>,
    ) {
        let a = stored(&*store, "conn-a").await;
        let auth = AuthState::new().auth_failed("HTTP 401");
        assert!(store.update_auth("conn-a", &auth).await.unwrap());
        let delivered = OffsetDateTime::from_unix_timestamp(1_760_000_100).unwrap();
        let missed = MissedClosing {
            at: OffsetDateTime::from_unix_timestamp(1_760_000_200).unwrap(),
            ticket: "SEC-42".into(),
        };
        let later = OffsetDateTime::from_unix_timestamp(1_760_000_300).unwrap();

        assert!(store.record_delivery("conn-a", delivered).await.unwrap());
        assert!(
            store
                .record_missed_closing("conn-a", &missed)
                .await
                .unwrap()
        );
        assert!(store.record_delivery("conn-a", later).await.unwrap());

        let read = store.get_connection("conn-a").await.unwrap().unwrap();
        assert_eq!(
            read.webhook,
            WebhookActivity {
                last_delivery_at: Some(later),
                last_missed_closing: Some(missed.clone()),
            }
        );
        assert_eq!((read.settings, read.auth), (a.settings.clone(), auth));
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
    }

    pub async fn connections_list_in_pages_by_id_each_exactly_once(
        store: Arc<dyn ConnectionStore>,
    ) {
        for id in ["conn-a", "conn-c", "conn-b"] {
            stored(&*store, id).await;
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
    }

    pub async fn a_forged_cursor_is_refused(store: Arc<dyn ConnectionStore>) {
        stored(&*store, "conn-a").await;

        let listed = store.list_connections(2, Some("junk!")).await;

        assert!(
            matches!(listed, Err(StoreError::InvalidCursor)),
            "{listed:?}"
        );
    }

    pub async fn a_deleted_connection_is_gone_and_comes_back_without_webhook_history(
        store: Arc<dyn ConnectionStore>,
    ) {
        let a = stored(&*store, "conn-a").await;
        let delivered = OffsetDateTime::from_unix_timestamp(1_760_000_100).unwrap();
        assert!(store.record_delivery("conn-a", delivered).await.unwrap());

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

    pub async fn a_settings_write_at_a_stale_version_is_refused_and_changes_nothing(
        store: Arc<dyn ConnectionStore>,
    ) {
        let a = stored(&*store, "conn-a").await;
        let read = store
            .get_connection_versioned("conn-a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.version, 1, "a new connection is at version 1");
        assert_eq!(read.connection, a);
        let mut first = a.settings.clone();
        first.closed_statuses = ClosedStatuses::Numbers(vec![5]);
        let mut second = a.settings.clone();
        second.base_url = "https://other.freshservice.com".into();

        // Two admins read version 1; the first write wins and moves the version on.
        let written = store.update_settings_if(&first, read.version).await;
        let lost = store.update_settings_if(&second, read.version).await;

        assert_eq!(written.unwrap(), 2);
        assert!(matches!(lost, Err(StoreError::Conflict)), "{lost:?}");
        let now = store
            .get_connection_versioned("conn-a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((now.connection.settings, now.version), (first.clone(), 2));
        // Recording a call's outcome or a delivery is not a settings write: the version stays.
        let auth = AuthState::new().auth_failed("HTTP 401");
        assert!(store.update_auth("conn-a", &auth).await.unwrap());
        let delivered = OffsetDateTime::from_unix_timestamp(1_760_000_100).unwrap();
        assert!(store.record_delivery("conn-a", delivered).await.unwrap());
        assert_eq!(
            store.update_settings_if(&second, 2).await.unwrap(),
            3,
            "the version read is still the version stored"
        );
        // An unconditional settings write moves the version on too.
        assert!(store.update_settings(&first).await.unwrap());
        let last = store
            .get_connection_versioned("conn-a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((last.connection.settings, last.version), (first, 4));
        // A versioned write never creates a connection.
        let missing = store
            .update_settings_if(&connection("nope").settings, 1)
            .await;
        assert!(matches!(missing, Err(StoreError::Conflict)), "{missing:?}");
        assert_eq!(store.get_connection_versioned("nope").await.unwrap(), None);
    }

    pub async fn a_delete_at_a_stale_version_is_refused_and_deletes_nothing(
        store: Arc<dyn ConnectionStore>,
    ) {
        let a = stored(&*store, "conn-a").await;
        let delivered = OffsetDateTime::from_unix_timestamp(1_760_000_100).unwrap();
        assert!(store.record_delivery("conn-a", delivered).await.unwrap());
        let read = store
            .get_connection_versioned("conn-a")
            .await
            .unwrap()
            .unwrap();
        // Another admin's edit lands between the read and the delete.
        let mut edited = a.settings.clone();
        edited.closed_statuses = ClosedStatuses::Numbers(vec![5]);
        assert_eq!(
            store
                .update_settings_if(&edited, read.version)
                .await
                .unwrap(),
            2
        );

        let stale = store.delete_connection_if("conn-a", read.version).await;

        assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
        let kept = store
            .get_connection_versioned("conn-a")
            .await
            .unwrap()
            .expect("the connection survives a stale delete");
        assert_eq!((kept.connection.settings, kept.version), (edited, 2));
        assert_eq!(
            kept.connection.webhook.last_delivery_at,
            Some(delivered),
            "its webhook history survives too"
        );

        store.delete_connection_if("conn-a", 2).await.unwrap();

        assert_eq!(store.get_connection("conn-a").await.unwrap(), None);
        let gone = store.delete_connection_if("conn-a", 2).await;
        assert!(
            matches!(gone, Err(StoreError::Conflict)),
            "a conditional delete of nothing conflicts: {gone:?}"
        );
        // Created again under the id, it starts with no webhook history.
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

    pub async fn listed_connections_carry_the_version_a_single_read_has(
        store: Arc<dyn ConnectionStore>,
    ) {
        let a = stored(&*store, "conn-a").await;
        stored(&*store, "conn-b").await;
        let mut edited = a.settings.clone();
        edited.closed_statuses = ClosedStatuses::Numbers(vec![5]);
        assert!(store.update_settings(&edited).await.unwrap());

        let listed = store.list_connections_versioned(10, None).await.unwrap();

        let versions: Vec<(String, u64)> = listed
            .items
            .iter()
            .map(|c| (c.connection.settings.id.clone(), c.version))
            .collect();
        assert_eq!(
            versions,
            [("conn-a".to_owned(), 2), ("conn-b".to_owned(), 1)]
        );
        for item in &listed.items {
            let single = store
                .get_connection_versioned(&item.connection.settings.id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(*item, single);
        }
    }
}

/// One test per case, each with a fresh store from `$make`, in module `$name`.
macro_rules! contract {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;
            macro_rules! case {
                ($case:ident) => {
                    #[tokio::test]
                    async fn $case() {
                        let store: Arc<dyn ConnectionStore> = Arc::new($make);
                        suite::$case(store).await;
                    }
                };
            }
            case!(a_connection_reads_back_and_inserting_it_twice_is_refused);
            case!(settings_and_status_change_independently_and_never_create_a_connection);
            case!(webhook_activity_is_written_on_its_own_and_never_creates_a_connection);
            case!(connections_list_in_pages_by_id_each_exactly_once);
            case!(a_forged_cursor_is_refused);
            case!(a_deleted_connection_is_gone_and_comes_back_without_webhook_history);
            case!(a_settings_write_at_a_stale_version_is_refused_and_changes_nothing);
            case!(a_delete_at_a_stale_version_is_refused_and_deletes_nothing);
            case!(listed_connections_carry_the_version_a_single_read_has);
        }
    };
}

contract!(embedded, embedded_store());
contract!(dynamodb, dynamo_store().await);
