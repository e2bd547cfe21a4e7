//! Secret stores for connection credentials and webhook secrets (DESIGN §6).
//!
//! - [`SecretsManagerStore`]: one Secrets Manager secret per connection, named `<SECRET_PREFIX><connection id>`,
//!   holding [`ConnectionSecrets::to_storage_json`]. Reads are cached per container for a short time
//!   ([`DEFAULT_CACHE_TTL`]): a rotation made through another container is seen within that time, and this
//!   container's own writes update its cache at once.
//! - [`LocalSecretStore`]: a JSON file in the local server's data directory, written with mode 0600 through a
//!   temporary file and a rename, so it is never readable by others nor half-written.
//!
//! Neither logs a value, and their errors never quote one.

use async_trait::async_trait;
#[cfg(feature = "aws")]
use aws_sdk_secretsmanager::Client;
#[cfg(feature = "aws")]
use aws_sdk_secretsmanager::config::http::HttpResponse;
#[cfg(feature = "aws")]
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use std::collections::BTreeMap;
#[cfg(feature = "aws")]
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(feature = "aws")]
use std::time::Instant;

#[cfg(feature = "aws")]
use super::aws_errors::{self, Fault};
use crate::domain::connection::ConnectionSecrets;
use crate::ports::{SecretStore, SecretStoreError};

/// How long a container trusts a secret it read.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

#[cfg(feature = "aws")]
type Cache = HashMap<String, (Instant, ConnectionSecrets)>;

#[cfg(feature = "aws")]
/// Secrets Manager, cached per container.
#[derive(Clone)]
pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
    ttl: Duration,
    cache: Arc<Mutex<Cache>>,
}

/// A failed call, classified (`adapters::aws_errors`): throttling, 5xx and timeouts are `Unavailable`, client
/// errors (access denied, a key policy, validation) `Rejected`. AWS messages name the secret, never its value.
#[cfg(feature = "aws")]
fn secret_error<E>(e: SdkError<E, HttpResponse>) -> SecretStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match aws_errors::classify(&e) {
        Fault::Retryable => SecretStoreError::Unavailable(aws_errors::describe(&e)),
        Fault::Permanent => SecretStoreError::Rejected(aws_errors::describe(&e)),
    }
}

#[cfg(feature = "aws")]
fn not_found<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

#[cfg(feature = "aws")]
impl SecretsManagerStore {
    /// `prefix` is `SECRET_PREFIX` (e.g. `ticketbound/`); `ttl` bounds how stale a cached read may be.
    pub fn new(client: Client, prefix: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            ttl,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The secret's name for a connection.
    pub fn secret_name(&self, connection: &str) -> String {
        format!("{}{connection}", self.prefix)
    }

    fn cached(&self, connection: &str) -> Option<ConnectionSecrets> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(connection)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, s)| s.clone())
    }

    fn remember(&self, connection: &str, secrets: Option<&ConnectionSecrets>) {
        if let Ok(mut cache) = self.cache.lock() {
            match secrets {
                Some(s) => {
                    cache.insert(connection.to_owned(), (Instant::now(), s.clone()));
                }
                None => {
                    cache.remove(connection);
                }
            }
        }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get(&self, connection: &str) -> Result<Option<ConnectionSecrets>, SecretStoreError> {
        if let Some(hit) = self.cached(connection) {
            return Ok(Some(hit));
        }
        let name = self.secret_name(connection);
        let out = match self.client.get_secret_value().secret_id(&name).send().await {
            Ok(out) => out,
            // A miss is not cached: a connection created in another container must show up at once.
            Err(e) if e.as_service_error().is_some_and(not_found) => return Ok(None),
            Err(e) => return Err(secret_error(e)),
        };
        let text = out.secret_string().ok_or_else(|| {
            SecretStoreError::Corrupt(format!("secret `{name}` holds no text value"))
        })?;
        let secrets = ConnectionSecrets::from_storage_json(text)
            .map_err(|e| SecretStoreError::Corrupt(format!("secret `{name}`: {e}")))?;
        self.remember(connection, Some(&secrets));
        Ok(Some(secrets))
    }

    async fn put(
        &self,
        connection: &str,
        secrets: &ConnectionSecrets,
    ) -> Result<(), SecretStoreError> {
        let name = self.secret_name(connection);
        let value = secrets.to_storage_json();
        let updated = self
            .client
            .put_secret_value()
            .secret_id(&name)
            .secret_string(&value)
            .send()
            .await;
        match updated {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(not_found) => {
                let created = self
                    .client
                    .create_secret()
                    .name(&name)
                    .description(format!(
                        "Ticketbound connection `{connection}`: credentials and webhook secrets"
                    ))
                    .secret_string(&value)
                    .send()
                    .await;
                match created {
                    Ok(_) => {}
                    // Created meanwhile by another container: write our value over it.
                    Err(e) if e.code() == Some("ResourceExistsException") => {
                        self.client
                            .put_secret_value()
                            .secret_id(&name)
                            .secret_string(&value)
                            .send()
                            .await
                            .map_err(secret_error)?;
                    }
                    Err(e) => return Err(secret_error(e)),
                }
            }
            Err(e) => return Err(secret_error(e)),
        }
        self.remember(connection, Some(secrets));
        Ok(())
    }

    async fn delete(&self, connection: &str) -> Result<(), SecretStoreError> {
        self.remember(connection, None);
        // Without a recovery window, so that a connection can be re-created under the same id at once.
        match self
            .client
            .delete_secret()
            .secret_id(self.secret_name(connection))
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(not_found) => Ok(()),
            Err(e) => Err(secret_error(e)),
        }
    }
}

/// The local server's secret file.
#[derive(Clone)]
pub struct LocalSecretStore {
    path: PathBuf,
    // Serializes read-modify-write cycles within the process.
    lock: Arc<Mutex<()>>,
}

impl LocalSecretStore {
    /// Uses (and, when present, tightens to 0600) the file at `path`.
    pub fn open(path: &Path) -> Result<Self, SecretStoreError> {
        if path.exists() {
            restrict(path)?;
        }
        Ok(Self {
            path: path.to_owned(),
            lock: Arc::new(Mutex::new(())),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, SecretStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, SecretStoreError> + Send + 'static,
    {
        let (path, lock) = (self.path.clone(), self.lock.clone());
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().map_err(|_| {
                SecretStoreError::Unavailable("the secret file lock was poisoned".into())
            })?;
            f(&path)
        })
        .await
        .map_err(|e| SecretStoreError::Unavailable(e.to_string()))?
    }
}

type SecretFile = BTreeMap<String, serde_json::Value>;

fn read_file(path: &Path) -> Result<SecretFile, SecretStoreError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            SecretStoreError::Corrupt(format!(
                "{} is not the expected JSON (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecretFile::new()),
        Err(e) => Err(SecretStoreError::Unavailable(format!(
            "reading {}: {e}",
            path.display()
        ))),
    }
}

fn write_file(path: &Path, file: &SecretFile) -> Result<(), SecretStoreError> {
    use std::io::Write;
    let io = |e: std::io::Error| {
        SecretStoreError::Unavailable(format!("writing {}: {e}", path.display()))
    };
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(&tmp).map_err(io)?;
    // A temp file left by an older run may have other permissions: `mode` only applies on creation.
    restrict(&tmp)?;
    let bytes =
        serde_json::to_vec_pretty(file).map_err(|e| SecretStoreError::Corrupt(e.to_string()))?;
    out.write_all(&bytes).map_err(io)?;
    out.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn restrict(path: &Path) -> Result<(), SecretStoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            SecretStoreError::Unavailable(format!("restricting {}: {e}", path.display()))
        })?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[async_trait]
impl SecretStore for LocalSecretStore {
    async fn get(&self, connection: &str) -> Result<Option<ConnectionSecrets>, SecretStoreError> {
        let connection = connection.to_owned();
        self.run(move |path| {
            let file = read_file(path)?;
            file.get(&connection)
                .map(|v| {
                    ConnectionSecrets::from_storage_json(&v.to_string())
                        .map_err(|e| SecretStoreError::Corrupt(format!("`{connection}`: {e}")))
                })
                .transpose()
        })
        .await
    }

    async fn put(
        &self,
        connection: &str,
        secrets: &ConnectionSecrets,
    ) -> Result<(), SecretStoreError> {
        let (connection, value) = (connection.to_owned(), secrets.to_storage_json());
        self.run(move |path| {
            let mut file = read_file(path)?;
            let json = serde_json::from_str(&value)
                .map_err(|e| SecretStoreError::Corrupt(e.to_string()))?;
            file.insert(connection, json);
            write_file(path, &file)
        })
        .await
    }

    async fn delete(&self, connection: &str) -> Result<(), SecretStoreError> {
        let connection = connection.to_owned();
        self.run(move |path| {
            let mut file = read_file(path)?;
            if file.remove(&connection).is_some() {
                write_file(path, &file)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::connection::Credentials;
    use crate::domain::secret::Secret;

    fn sample(token: &str) -> ConnectionSecrets {
        ConnectionSecrets {
            credentials: Credentials::ApiKey {
                api_key: Secret::new(token),
            },
            webhook_secrets: vec![Secret::new("wh")],
        }
    }

    fn temp_dir() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tb-secrets-{}", crate::domain::ids::new_secret()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn the_local_file_keeps_secrets_private_and_across_reopens() {
        let dir = temp_dir();
        let path = dir.join("secrets.json");
        let store = LocalSecretStore::open(&path).unwrap();
        assert_eq!(store.get("fs").await.unwrap(), None);
        store.put("fs", &sample("k1")).await.unwrap();
        store.put("other", &sample("k2")).await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let reopened = LocalSecretStore::open(&path).unwrap();
        assert_eq!(reopened.get("fs").await.unwrap(), Some(sample("k1")));
        reopened.delete("fs").await.unwrap();
        reopened.delete("fs").await.unwrap();
        assert_eq!(reopened.get("fs").await.unwrap(), None);
        assert_eq!(reopened.get("other").await.unwrap(), Some(sample("k2")));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_local_file_is_an_error_not_a_panic() {
        let dir = temp_dir();
        let path = dir.join("secrets.json");
        std::fs::write(&path, "{not json").unwrap();
        let store = LocalSecretStore::open(&path).unwrap();
        assert!(matches!(
            store.get("x").await,
            Err(SecretStoreError::Corrupt(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
