//! Building the application from configuration: the AWS adapters for the Lambda functions, the embedded ones
//! for the local server. Each `main` calls one of these and runs its router or handler.

#[cfg(feature = "embedded")]
use std::path::Path;
use std::sync::Arc;
#[cfg(feature = "aws")]
use std::time::Duration;

#[cfg(feature = "aws")]
use aws_config::retry::RetryConfig;
#[cfg(feature = "aws")]
use aws_config::timeout::TimeoutConfig;

#[cfg(feature = "aws")]
use crate::adapters::dynamodb::DynamoStore;
#[cfg(feature = "embedded")]
use crate::adapters::embedded::EmbeddedStore;
#[cfg(feature = "aws")]
use crate::adapters::identity_center::IdentityCenter;
#[cfg(feature = "embedded")]
use crate::adapters::local_scheduler::LocalScheduler;
use crate::adapters::provisioner::{DEFAULT_TIMEOUT, HttpProvisioners};
#[cfg(feature = "aws")]
use crate::adapters::scheduler::{EventBridgeScheduler, EventBridgeSettings};
#[cfg(feature = "embedded")]
use crate::adapters::secrets::LocalSecretStore;
#[cfg(feature = "aws")]
use crate::adapters::secrets::{DEFAULT_CACHE_TTL, SecretsManagerStore};
use crate::adapters::ticket_http::HttpPolicy;
use crate::adapters::ticket_systems::HttpTicketSystems;
#[cfg(feature = "aws")]
use crate::config::Config;
use crate::ports::{Clock, SystemClock};
#[cfg(feature = "aws")]
use crate::service::ReconcileSettings;
use crate::service::{Ports, Settings, Ticketbound};

#[derive(Debug, thiserror::Error)]
#[error("start-up: {0}")]
pub struct WiringError(pub String);

/// How long one AWS call may take. DynamoDB, Scheduler and Secrets Manager answer in milliseconds; a stalled
/// endpoint must fail as a retryable timeout well inside a function's own timeout (25 s for the HTTP functions)
/// rather than hang it. The SDK's standard retry (3 attempts, jittered backoff) runs within `operation`.
#[cfg(feature = "aws")]
#[derive(Clone, Copy, Debug)]
pub struct AwsTimeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// One attempt, from sending the request to reading the whole answer.
    pub attempt: Duration,
    /// All attempts of one call together, backoff included.
    pub operation: Duration,
}

#[cfg(feature = "aws")]
impl Default for AwsTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            attempt: Duration::from_secs(4),
            operation: Duration::from_secs(12),
        }
    }
}

/// The SDK configuration the AWS clients are built from: the standard chain (region, credentials,
/// `AWS_ENDPOINT_URL*`, which is how tests point it at moto or the fault proxy), the standard retry, and
/// `timeouts`.
#[cfg(feature = "aws")]
pub async fn aws_sdk_config(timeouts: AwsTimeouts) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    // One HTTP client for every SDK client of this configuration, over the process's one root store
    // (adapters::tls). Without a usable store the SDK keeps its own client, which finds none either and fails
    // at its first HTTPS call.
    match crate::adapters::tls::aws_http_client() {
        Ok(http) => loader = loader.http_client(http),
        Err(e) => tracing::warn!(error = %e, "the AWS SDK keeps its default HTTP client"),
    }
    loader
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.operation)
                .build(),
        )
        .retry_config(RetryConfig::standard())
        .load()
        .await
}

/// The application over DynamoDB, EventBridge Scheduler and HTTP provisioners, with [`aws_sdk_config`] and the
/// default [`AwsTimeouts`].
#[cfg(feature = "aws")]
pub async fn aws_app(config: &Config) -> Result<Ticketbound, WiringError> {
    let sdk = aws_sdk_config(AwsTimeouts::default()).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name);
    let scheduler = EventBridgeScheduler::new(
        aws_sdk_scheduler::Client::new(&sdk),
        EventBridgeSettings {
            group: config.schedule_group.clone(),
            target_arn: config.expiry_function_arn.clone(),
            role_arn: config.scheduler_role_arn.clone(),
            dlq_arn: config.schedule_dlq_arn.clone(),
        },
    );
    // The built-in IAM Identity Center provisioner: its clients are built from the configuration without a
    // call, so a cold start costs nothing until a resource uses it.
    let provisioners = HttpProvisioners::new(clock.clone(), DEFAULT_TIMEOUT)
        .map_err(|e| WiringError(e.to_string()))?
        .with_identity_center(IdentityCenter::new(&sdk, clock.clone()));
    // Notifications: the channels in NOTIFICATIONS_SECRET, read and checked once at start.
    let (notifier, mut notifications) = crate::adapters::notify::aws_notifications(
        &sdk,
        config.notifications_secret.as_deref(),
        config.portal_url.as_deref(),
        clock.clone(),
    )
    .await
    .map_err(|e| WiringError(e.to_string()))?;
    notifications.approver_group = config.roles.approver.clone();
    let store = Arc::new(store);
    let ports = Ports {
        notifier: Arc::new(notifier),
        grants: store.clone(),
        connections: store,
        scheduler: Arc::new(scheduler),
        secrets: Arc::new(SecretsManagerStore::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            &config.secret_prefix,
            DEFAULT_CACHE_TTL,
        )),
        ticket_systems: Arc::new(
            HttpTicketSystems::new(HttpPolicy::default())
                .map_err(|e| WiringError(e.to_string()))?,
        ),
        provisioners: Arc::new(provisioners),
        clock,
    };
    Ok(Ticketbound::build(
        ports,
        Settings {
            max_duration: config.max_duration.clone(),
            reconcile: ReconcileSettings {
                every: config
                    .reconcile_every
                    .as_ref()
                    .map(|d| std::time::Duration::from_secs(d.seconds().unsigned_abs())),
                ..ReconcileSettings::default()
            },
            notifications,
            pending_for: config.pending_for.clone(),
            ..Settings::default()
        },
    ))
}

/// Moves provisioner secrets still held by stored resources into the secret store
/// ([`Ticketbound::move_provisioner_secrets`]). The API function calls it at start: it is the function allowed
/// to write secrets, and the others sign with a secret still held by a resource until it has run. A failure is
/// logged and the start goes on: nothing is lost, and the next start tries again.
#[cfg(feature = "aws")]
pub async fn move_provisioner_secrets_at_start(app: &Ticketbound) {
    match app.move_provisioner_secrets().await {
        Ok(0) => {}
        Ok(moved) => tracing::info!(moved, "provisioner secrets moved to Secrets Manager"),
        Err(e) => {
            tracing::error!(error = %e, "provisioner secrets could not be moved out of the table")
        }
    }
}

/// The local data folder and the files in it, readable by the owner only: the folder 0700 (created so, or
/// tightened when it exists), the database and its `-wal`/`-shm` files 0600. SQLite creates the `-wal` and
/// `-shm` files with the database file's mode, so an empty database file is created 0600 before it opens it.
#[cfg(feature = "embedded")]
fn private_data_dir(data_dir: &Path, db: &Path) -> Result<(), WiringError> {
    let err = |path: &Path, e: std::io::Error| WiringError(format!("{}: {e}", path.display()));
    crate::adapters::secrets::create_private_dir(data_dir).map_err(|e| err(data_dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let private = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| err(path, e))
        };
        private(data_dir, 0o700)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)
            .map_err(|e| err(db, e))?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let path = std::path::PathBuf::from(name);
            if path.exists() {
                private(&path, 0o600)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

/// The local application: SQLite under `data_dir`, the in-process scheduler (armed by the caller once the
/// router is up), HTTP provisioners, connection and provisioner secrets in `data_dir/secrets.json`. The folder
/// is kept 0700 and its files 0600. Provisioner secrets still held by stored resources are moved to the secret
/// file before it returns.
#[cfg(feature = "embedded")]
pub fn local_app(
    data_dir: &Path,
    settings: Settings,
) -> Result<(Ticketbound, LocalScheduler), WiringError> {
    let db = data_dir.join("ticketbound.db");
    private_data_dir(data_dir, &db)?;
    let store = EmbeddedStore::open(&db).map_err(|e| WiringError(e.to_string()))?;
    let scheduler = LocalScheduler::new(store.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let provisioners = HttpProvisioners::new(clock.clone(), DEFAULT_TIMEOUT)
        .map_err(|e| WiringError(e.to_string()))?;
    let secrets = LocalSecretStore::open(&data_dir.join("secrets.json"))
        .map_err(|e| WiringError(e.to_string()))?;
    // Notifications: the channels under `_notifications` in the same secret file, checked at start.
    let mut settings = settings;
    let (notifier, notifications) = crate::adapters::notify::local_notifications(
        &data_dir.join("secrets.json"),
        settings.notifications.portal_url.as_deref(),
        clock.clone(),
    )
    .map_err(|e| WiringError(e.to_string()))?;
    // The approver group is the caller's (APPROVER_GROUP), not the secret file's.
    settings.notifications = crate::domain::notification::NotifySettings {
        approver_group: settings.notifications.approver_group.clone(),
        ..notifications
    };
    let store = Arc::new(store);
    let ports = Ports {
        notifier: Arc::new(notifier),
        grants: store.clone(),
        connections: store,
        scheduler: Arc::new(scheduler.clone()),
        secrets: Arc::new(secrets),
        ticket_systems: Arc::new(
            HttpTicketSystems::new(HttpPolicy::default())
                .map_err(|e| WiringError(e.to_string()))?,
        ),
        provisioners: Arc::new(provisioners),
        clock,
    };
    let app = Ticketbound::build(ports, settings);
    if move_local_provisioner_secrets(&app)? > 0 {
        scrub_database(&db)?;
    }
    Ok((app, scheduler))
}

/// Rewrites the database file so that no byte of a row's earlier version is left in it: SQLite leaves a
/// rewritten row's old bytes in the page's free space and in the write-ahead log. `VACUUM` rebuilds every page,
/// and a truncating checkpoint empties the log. Run once, after secrets were moved out of resources.
#[cfg(feature = "embedded")]
fn scrub_database(db: &Path) -> Result<(), WiringError> {
    let err = |e: rusqlite::Error| WiringError(format!("compacting {}: {e}", db.display()));
    let conn = rusqlite::Connection::open(db).map_err(err)?;
    conn.execute_batch("VACUUM;").map_err(err)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(err)?;
    Ok(())
}

/// Runs [`Ticketbound::move_provisioner_secrets`] to its end from the synchronous [`local_app`], whether or not
/// its caller is inside a Tokio runtime: on a thread of its own with a runtime of its own (nesting one in the
/// caller's would panic).
#[cfg(feature = "embedded")]
fn move_local_provisioner_secrets(app: &Ticketbound) -> Result<usize, WiringError> {
    let moved = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| WiringError(format!("a runtime to move secrets: {e}")))?
                    .block_on(app.move_provisioner_secrets())
                    .map_err(|e| WiringError(format!("moving provisioner secrets: {e}")))
            })
            .join()
            .map_err(|_| WiringError("moving provisioner secrets panicked".into()))?
    })?;
    if moved > 0 {
        tracing::info!(moved, "provisioner secrets moved to the secret file");
    }
    Ok(moved)
}
