//! The `SecretStore` contract: Secrets Manager (on moto) and the local secret file pass the same cases. What is
//! particular to one adapter (the cache of Secrets Manager, the file's mode) stays in its own tests
//! (`connections_secrets.rs`, the adapter's unit tests).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ticketbound::adapters::secrets::{LocalSecretStore, SecretsManagerStore};
use ticketbound::domain::connection::{AuthMethod, ConnectionSecrets, Credentials};
use ticketbound::domain::secret::Secret;
use ticketbound::ports::SecretStore;
use ticketbound_tests::{aws, temp_dir};

fn secrets(token: &str, webhooks: &[&str]) -> ConnectionSecrets {
    ConnectionSecrets {
        credentials: Credentials::new(AuthMethod::ApiToken, Secret::new(token)),
        webhook_secrets: webhooks.iter().map(|w| Secret::new(*w)).collect(),
    }
}

/// A store under test; the directory of a local file is removed when the test ends.
struct Subject {
    store: Arc<dyn SecretStore>,
    dir: Option<PathBuf>,
}

impl Drop for Subject {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The secret file of the local server, in a directory of its own.
fn local_file() -> Subject {
    let dir = temp_dir("secrets-contract");
    Subject {
        store: Arc::new(LocalSecretStore::open(&dir.join("secrets.json")).expect("secret file")),
        dir: Some(dir),
    }
}

/// Secrets Manager on moto under a prefix of its own, without the cache (the contract is about what a read
/// returns after a write in the same container).
async fn secrets_manager() -> Subject {
    let client = aws_sdk_secretsmanager::Client::new(&aws().await);
    let prefix = format!(
        "tb-contract-{}/",
        &ticketbound::domain::ids::new_secret()[..12]
    );
    Subject {
        store: Arc::new(SecretsManagerStore::new(client, prefix, Duration::ZERO)),
        dir: None,
    }
}

mod suite {
    use super::*;

    pub async fn a_connection_without_secrets_reads_as_none(s: Subject) {
        let read = s.store.get("jira-main").await.expect("get");

        assert_eq!(read, None);
    }

    pub async fn secrets_read_back_as_written(s: Subject) {
        s.store
            .put("jira-main", &secrets("tok-1", &["wh-1"]))
            .await
            .expect("put");

        let read = s.store.get("jira-main").await.expect("get");

        assert_eq!(read, Some(secrets("tok-1", &["wh-1"])));
    }

    pub async fn a_second_write_replaces_the_first(s: Subject) {
        s.store
            .put("jira-main", &secrets("tok-1", &["wh-1"]))
            .await
            .expect("put");

        s.store
            .put("jira-main", &secrets("tok-2", &["wh-1", "wh-2"]))
            .await
            .expect("replace");

        assert_eq!(
            s.store.get("jira-main").await.expect("get"),
            Some(secrets("tok-2", &["wh-1", "wh-2"]))
        );
    }

    pub async fn connections_keep_their_own_secrets(s: Subject) {
        s.store
            .put("jira-main", &secrets("jira-token", &["wh-j"]))
            .await
            .expect("put jira");
        s.store
            .put("fs-main", &secrets("fs-key", &["wh-f"]))
            .await
            .expect("put freshservice");

        s.store.delete("jira-main").await.expect("delete jira");

        assert_eq!(s.store.get("jira-main").await.expect("get jira"), None);
        assert_eq!(
            s.store.get("fs-main").await.expect("get freshservice"),
            Some(secrets("fs-key", &["wh-f"]))
        );
    }

    pub async fn deleting_twice_succeeds_and_the_name_is_free_at_once(s: Subject) {
        s.store
            .put("jira-main", &secrets("tok-1", &["wh-1"]))
            .await
            .expect("put");
        s.store.delete("jira-main").await.expect("delete");

        let again = s.store.delete("jira-main").await;
        s.store
            .put("jira-main", &secrets("tok-3", &["wh-3"]))
            .await
            .expect("put after delete");

        assert!(again.is_ok(), "{again:?}");
        assert_eq!(
            s.store.get("jira-main").await.expect("get"),
            Some(secrets("tok-3", &["wh-3"]))
        );
    }

    pub async fn deleting_a_connection_that_never_had_secrets_succeeds(s: Subject) {
        let deleted = s.store.delete("never-there").await;

        assert!(deleted.is_ok(), "{deleted:?}");
    }

    /// A resource's provisioner secret and a connection under the same id are two entries.
    pub async fn provisioner_secrets_are_kept_apart_from_connections(s: Subject) {
        assert_eq!(s.store.get_provisioner("prod-db").await.expect("get"), None);
        s.store
            .put("prod-db", &secrets("tok-1", &["wh-1"]))
            .await
            .expect("put connection");
        s.store
            .put_provisioner("prod-db", &Secret::new("provisioner-secret-1"))
            .await
            .expect("put provisioner");
        s.store
            .put_provisioner("prod-db", &Secret::new("provisioner-secret-2"))
            .await
            .expect("replace provisioner");

        assert_eq!(
            s.store.get_provisioner("prod-db").await.expect("get"),
            Some(Secret::new("provisioner-secret-2"))
        );
        s.store.delete("prod-db").await.expect("delete connection");
        assert_eq!(
            s.store.get_provisioner("prod-db").await.expect("get"),
            Some(Secret::new("provisioner-secret-2")),
            "deleting the connection leaves the resource's secret"
        );
        s.store
            .delete_provisioner("prod-db")
            .await
            .expect("delete provisioner");
        s.store
            .delete_provisioner("prod-db")
            .await
            .expect("delete twice");
        assert_eq!(s.store.get_provisioner("prod-db").await.expect("get"), None);
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
                        suite::$case($make).await;
                    }
                };
            }
            case!(a_connection_without_secrets_reads_as_none);
            case!(secrets_read_back_as_written);
            case!(a_second_write_replaces_the_first);
            case!(connections_keep_their_own_secrets);
            case!(deleting_twice_succeeds_and_the_name_is_free_at_once);
            case!(deleting_a_connection_that_never_had_secrets_succeeds);
            case!(provisioner_secrets_are_kept_apart_from_connections);
        }
    };
}

contract!(local_file, local_file());
contract!(secrets_manager_on_moto, secrets_manager().await);
