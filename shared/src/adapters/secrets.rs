//! Secret stores for connection credentials and webhook secrets (DESIGN §6) and for the signing secrets of
//! `webhook` provisioners (DESIGN §7), which are kept here rather than with the resource in the table.
//!
//! - [`SecretsManagerStore`]: one Secrets Manager secret per connection, named `<SECRET_PREFIX><connection id>`,
//!   holding [`ConnectionSecrets::to_storage_json`], and one per webhook-provisioned resource, named
//!   `<SECRET_PREFIX>_provisioners/<resource id>`, holding the secret as plain text. Reads are cached per
//!   container for a short time ([`DEFAULT_CACHE_TTL`]): a rotation made through another container is seen
//!   within that time, and this container's own writes update its cache at once. Nothing is read at start, so a
//!   cold start pays only for the secrets its invocation uses.
//! - [`LocalSecretStore`]: a JSON file in the local server's data directory (connections by id, the provisioner
//!   secrets under `_provisioners`), written with mode 0600 through a temporary file and a rename, so it is
//!   never readable by others nor half-written. A missing directory is created with mode 0700.
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
use super::aws_errors;
use crate::domain::connection::ConnectionSecrets;
use crate::domain::secret::Secret;
#[cfg(feature = "aws")]
use crate::domain::side_effect::FailureClass;
use crate::ports::{SecretStore, SecretStoreError};

/// How long a container trusts a secret it read.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

#[cfg(feature = "aws")]
type Cache<T> = Arc<Mutex<HashMap<String, (Instant, T)>>>;

/// The name under which a provisioner secret is kept, after the store's prefix (Secrets Manager) or as the key
/// of the local file. It starts with `_`, which no connection id does.
pub const PROVISIONERS: &str = "_provisioners";

#[cfg(feature = "aws")]
/// Secrets Manager, cached per container.
#[derive(Clone)]
pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
    ttl: Duration,
    cache: Cache<ConnectionSecrets>,
    provisioner_cache: Cache<Secret>,
}

/// A failed call, classified (`adapters::aws_errors`): throttling, 5xx and timeouts are `Unavailable`, client
/// errors (access denied, a key policy, validation) `Rejected`. AWS messages name the secret, never its value.
#[cfg(feature = "aws")]
fn secret_error<E>(e: SdkError<E, HttpResponse>) -> SecretStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match aws_errors::classify(&e) {
        FailureClass::Retryable | FailureClass::Conflict => {
            SecretStoreError::Unavailable(aws_errors::describe(&e))
        }
        FailureClass::Permanent => SecretStoreError::Rejected(aws_errors::describe(&e)),
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
            cache: Arc::default(),
            provisioner_cache: Arc::default(),
        }
    }

    /// The secret's name for a connection.
    pub fn secret_name(&self, connection: &str) -> String {
        format!("{}{connection}", self.prefix)
    }

    /// The secret's name for a resource's webhook provisioner.
    pub fn provisioner_secret_name(&self, resource: &str) -> String {
        format!("{}{PROVISIONERS}/{resource}", self.prefix)
    }

    fn cached<T: Clone>(&self, cache: &Cache<T>, key: &str) -> Option<T> {
        let cache = cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, s)| s.clone())
    }

    fn remember<T: Clone>(cache: &Cache<T>, key: &str, value: Option<&T>) {
        if let Ok(mut cache) = cache.lock() {
            match value {
                Some(v) => {
                    cache.insert(key.to_owned(), (Instant::now(), v.clone()));
                }
                None => {
                    cache.remove(key);
                }
            }
        }
    }

    /// The text value of secret `name`; `None` when there is no such secret. A miss is not cached by callers:
    /// a secret created in another container must show up at once.
    async fn read(&self, name: &str) -> Result<Option<String>, SecretStoreError> {
        let out = match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(not_found) => return Ok(None),
            Err(e) => return Err(secret_error(e)),
        };
        out.secret_string()
            .map(str::to_owned)
            .map(Some)
            .ok_or_else(|| {
                SecretStoreError::Corrupt(format!("secret `{name}` holds no text value"))
            })
    }

    /// Writes `value` as the current version of secret `name`, creating it (with `description`) if needed.
    async fn write(
        &self,
        name: &str,
        value: &str,
        description: String,
    ) -> Result<(), SecretStoreError> {
        let updated = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(not_found) => {
                let created = self
                    .client
                    .create_secret()
                    .name(name)
                    .description(description)
                    .secret_string(value)
                    .send()
                    .await;
                match created {
                    Ok(_) => Ok(()),
                    // Created meanwhile by another container: write our value over it.
                    Err(e) if e.code() == Some("ResourceExistsException") => {
                        self.client
                            .put_secret_value()
                            .secret_id(name)
                            .secret_string(value)
                            .send()
                            .await
                            .map_err(secret_error)?;
                        Ok(())
                    }
                    Err(e) => Err(secret_error(e)),
                }
            }
            Err(e) => Err(secret_error(e)),
        }
    }

    /// Deletes secret `name` without a recovery window, so that the same name can be used again at once.
    async fn remove(&self, name: &str) -> Result<(), SecretStoreError> {
        match self
            .client
            .delete_secret()
            .secret_id(name)
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

#[cfg(feature = "aws")]
#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get(&self, connection: &str) -> Result<Option<ConnectionSecrets>, SecretStoreError> {
        if let Some(hit) = self.cached(&self.cache, connection) {
            return Ok(Some(hit));
        }
        let name = self.secret_name(connection);
        let Some(text) = self.read(&name).await? else {
            return Ok(None);
        };
        let secrets = ConnectionSecrets::from_storage_json(&text)
            .map_err(|e| SecretStoreError::Corrupt(format!("secret `{name}`: {e}")))?;
        Self::remember(&self.cache, connection, Some(&secrets));
        Ok(Some(secrets))
    }

    async fn put(
        &self,
        connection: &str,
        secrets: &ConnectionSecrets,
    ) -> Result<(), SecretStoreError> {
        let description =
            format!("Ticketbound connection `{connection}`: credentials and webhook secrets");
        self.write(
            &self.secret_name(connection),
            &secrets.to_storage_json(),
            description,
        )
        .await?;
        Self::remember(&self.cache, connection, Some(secrets));
        Ok(())
    }

    async fn delete(&self, connection: &str) -> Result<(), SecretStoreError> {
        Self::remember(&self.cache, connection, None);
        self.remove(&self.secret_name(connection)).await
    }

    async fn get_provisioner(&self, resource: &str) -> Result<Option<Secret>, SecretStoreError> {
        if let Some(hit) = self.cached(&self.provisioner_cache, resource) {
            return Ok(Some(hit));
        }
        let name = self.provisioner_secret_name(resource);
        let Some(text) = self.read(&name).await? else {
            return Ok(None);
        };
        let secret = Secret::new(text);
        Self::remember(&self.provisioner_cache, resource, Some(&secret));
        Ok(Some(secret))
    }

    async fn put_provisioner(
        &self,
        resource: &str,
        secret: &Secret,
    ) -> Result<(), SecretStoreError> {
        let description = format!(
            "Ticketbound resource `{resource}`: the signing secret of its webhook provisioner"
        );
        self.write(
            &self.provisioner_secret_name(resource),
            secret.expose(),
            description,
        )
        .await?;
        Self::remember(&self.provisioner_cache, resource, Some(secret));
        Ok(())
    }

    async fn delete_provisioner(&self, resource: &str) -> Result<(), SecretStoreError> {
        Self::remember(&self.provisioner_cache, resource, None);
        self.remove(&self.provisioner_secret_name(resource)).await
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
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        create_private_dir(dir).map_err(io)?;
    }
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

/// Creates `dir` (and missing parents) readable by the owner only: mode 0700 on Unix.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
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

    async fn get_provisioner(&self, resource: &str) -> Result<Option<Secret>, SecretStoreError> {
        let resource = resource.to_owned();
        self.run(move |path| {
            let file = read_file(path)?;
            match file.get(PROVISIONERS).and_then(|all| all.get(&resource)) {
                None => Ok(None),
                Some(serde_json::Value::String(value)) => Ok(Some(Secret::new(value.as_str()))),
                Some(_) => Err(SecretStoreError::Corrupt(format!(
                    "`{PROVISIONERS}.{resource}` in {} is not a string",
                    path.display()
                ))),
            }
        })
        .await
    }

    async fn put_provisioner(
        &self,
        resource: &str,
        secret: &Secret,
    ) -> Result<(), SecretStoreError> {
        let (resource, value) = (resource.to_owned(), secret.expose().to_owned());
        self.run(move |path| {
            let mut file = read_file(path)?;
            let all = file
                .entry(PROVISIONERS.to_owned())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            let Some(all) = all.as_object_mut() else {
                return Err(SecretStoreError::Corrupt(format!(
                    "`{PROVISIONERS}` in {} is not an object",
                    path.display()
                )));
            };
            if all.get(&resource).and_then(|v| v.as_str()) == Some(value.as_str()) {
                // Already there (a repeated move at start): no rewrite.
                return Ok(());
            }
            all.insert(resource, serde_json::Value::String(value));
            write_file(path, &file)
        })
        .await
    }

    async fn delete_provisioner(&self, resource: &str) -> Result<(), SecretStoreError> {
        let resource = resource.to_owned();
        self.run(move |path| {
            let mut file = read_file(path)?;
            let removed = file
                .get_mut(PROVISIONERS)
                .and_then(|all| all.as_object_mut())
                .is_some_and(|all| all.remove(&resource).is_some());
            if removed {
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

    fn sample(token: &str) -> ConnectionSecrets {
        ConnectionSecrets {
            credentials: Credentials::new(
                crate::domain::connection::AuthMethod::ApiKey,
                Secret::new(token),
            ),
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
    async fn provisioner_secrets_sit_beside_connections_in_a_private_file_and_folder() {
        let dir = temp_dir().join("fresh");
        let path = dir.join("secrets.json");
        let store = LocalSecretStore::open(&path).unwrap();
        assert_eq!(store.get_provisioner("prod-db").await.unwrap(), None);
        store
            .put_provisioner("prod-db", &Secret::new("prov-secret-0123456789"))
            .await
            .unwrap();
        store.put("prod-db", &sample("k1")).await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700, "a folder the store had to create");
            assert_eq!(mode(&path), 0o600);
        }
        let reopened = LocalSecretStore::open(&path).unwrap();
        assert_eq!(
            reopened.get_provisioner("prod-db").await.unwrap(),
            Some(Secret::new("prov-secret-0123456789"))
        );
        assert_eq!(reopened.get("prod-db").await.unwrap(), Some(sample("k1")));
        reopened.delete_provisioner("prod-db").await.unwrap();
        reopened.delete_provisioner("prod-db").await.unwrap();
        assert_eq!(reopened.get_provisioner("prod-db").await.unwrap(), None);
        assert_eq!(reopened.get("prod-db").await.unwrap(), Some(sample("k1")));
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
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
