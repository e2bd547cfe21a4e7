//! Building the application from configuration: the AWS adapters for the Lambda functions, the embedded ones
//! for the local server. Each `main` calls one of these and runs its router or handler.

use std::path::Path;
use std::sync::Arc;

use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::embedded::EmbeddedStore;
use crate::adapters::local_scheduler::LocalScheduler;
use crate::adapters::provisioner::{DEFAULT_TIMEOUT, HttpProvisioners};
use crate::adapters::scheduler::{EventBridgeScheduler, EventBridgeSettings};
use crate::adapters::secrets::{DEFAULT_CACHE_TTL, LocalSecretStore, SecretsManagerStore};
use crate::adapters::ticket_http::HttpPolicy;
use crate::adapters::ticket_systems::HttpTicketSystems;
use crate::config::Config;
use crate::ports::{Clock, SystemClock, TicketVerifier};
use crate::service::{Connections, ReconcileSettings, Settings, TicketProvisioners, Ticketbound};

#[derive(Debug, thiserror::Error)]
#[error("start-up: {0}")]
pub struct WiringError(pub String);

/// The application over DynamoDB, EventBridge Scheduler and HTTP provisioners. AWS endpoints come from the
/// SDK's standard configuration (`AWS_ENDPOINT_URL*` included, which is how tests point it at moto).
pub async fn aws_app(config: &Config) -> Result<Ticketbound, WiringError> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
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
    let provisioners =
        HttpProvisioners::new(clock.clone(), DEFAULT_TIMEOUT).map_err(|e| WiringError(e.0))?;
    let store = Arc::new(store);
    let connections = Connections::new(
        store.clone(),
        Arc::new(SecretsManagerStore::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            &config.secret_prefix,
            DEFAULT_CACHE_TTL,
        )),
        Arc::new(
            HttpTicketSystems::new(HttpPolicy::default())
                .map_err(|e| WiringError(e.to_string()))?,
        ),
        store.clone(),
        clock.clone(),
    );
    Ok(Ticketbound {
        store,
        scheduler: Arc::new(scheduler),
        // `webhook` and `none` over HTTP; `ticket` through the connections (DESIGN §7).
        provisioners: Arc::new(TicketProvisioners::new(
            Arc::new(provisioners),
            connections.clone(),
        )),
        tickets: Some(Arc::new(connections.clone()) as Arc<dyn TicketVerifier>),
        connections: Some(connections),
        clock,
        settings: Settings {
            max_duration: config.max_duration.clone(),
            reconcile: ReconcileSettings {
                every: config
                    .reconcile_every
                    .as_ref()
                    .map(|d| std::time::Duration::from_secs(d.seconds().unsigned_abs())),
                ..ReconcileSettings::default()
            },
            ..Settings::default()
        },
    })
}

/// The local application: SQLite under `data_dir`, the in-process scheduler (armed by the caller once the
/// router is up), HTTP provisioners, connection secrets in `data_dir/secrets.json` (mode 0600).
pub fn local_app(
    data_dir: &Path,
    settings: Settings,
) -> Result<(Ticketbound, LocalScheduler), WiringError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| WiringError(format!("creating {}: {e}", data_dir.display())))?;
    let store = EmbeddedStore::open(&data_dir.join("ticketbound.db"))
        .map_err(|e| WiringError(e.to_string()))?;
    let scheduler = LocalScheduler::new(store.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let provisioners =
        HttpProvisioners::new(clock.clone(), DEFAULT_TIMEOUT).map_err(|e| WiringError(e.0))?;
    let secrets = LocalSecretStore::open(&data_dir.join("secrets.json"))
        .map_err(|e| WiringError(e.to_string()))?;
    let store = Arc::new(store);
    let connections = Connections::new(
        store.clone(),
        Arc::new(secrets),
        Arc::new(
            HttpTicketSystems::new(HttpPolicy::default())
                .map_err(|e| WiringError(e.to_string()))?,
        ),
        store.clone(),
        clock.clone(),
    );
    let app = Ticketbound {
        store,
        scheduler: Arc::new(scheduler.clone()),
        // `webhook` and `none` over HTTP; `ticket` through the connections (DESIGN §7).
        provisioners: Arc::new(TicketProvisioners::new(
            Arc::new(provisioners),
            connections.clone(),
        )),
        tickets: Some(Arc::new(connections.clone()) as Arc<dyn TicketVerifier>),
        connections: Some(connections),
        clock,
        settings,
    };
    Ok((app, scheduler))
}
