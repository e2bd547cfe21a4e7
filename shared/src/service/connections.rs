//! Ticket-system connections (DESIGN §6): admins create, change, verify and delete them; everyone lists their
//! own open tickets through them; grant requests and approvals check ticket bindings through them (rule 3); the
//! webhook handlers look up webhook secrets and ticket states through them.
//!
//! Every call to a ticket system goes through [`Connections::observe`], which keeps the connection's
//! authorization status: a success makes it `connected`, a 401/403 `needs_reauthorization` (then `failed` after
//! several in a row), anything else only records `last_error`.
//!
//! For the webhook handlers the API is:
//! - [`Connections::webhook_secrets`]: the connection and its active webhook secrets ([`WebhookSecrets`] checks a
//!   shared secret or an `X-Hub-Signature` in constant time);
//! - [`Connections::ticket_state`]: whether a ticket is open, closed or deleted, read from the ticket system.

use async_trait::async_trait;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;

use super::ServiceError;
use crate::domain::connection::{
    AuthMethod, AuthState, AuthStatus, ClosedStatuses, Connection, ConnectionKind,
    ConnectionSecrets, ConnectionSettings, MissedClosing, Person, PersonLookup, ProjectSummary,
    Ticket, TicketState, TicketSummary, WebhookActivity, WebhookHealth, WebhookSecrets,
};
use crate::domain::identity::{looks_like_email, normalize_email};
use crate::domain::ids::{is_slug, new_secret};
use crate::domain::secret::{MASK, Secret};
use crate::domain::ticket_writes::AuditSettings;
use crate::domain::url_policy::check_outbound_url;
use crate::domain::{Caller, TicketRef};

mod health;
mod writes;
use crate::ports::WebhookSource;
use crate::ports::{
    Clock, ConnectionStore, CredentialFields, GrantStore, Page, SecretStore, SecretStoreError,
    SettingsError, StoreError, TicketCheckError, TicketSystem, TicketSystemError, TicketSystemKind,
    TicketSystems, TicketVerifier,
};
pub(crate) use health::ReconcileSession;
pub use writes::TicketWriteError;

/// Webhook secrets active at once (enough for a rotation, few enough to try them all).
pub const MAX_WEBHOOK_SECRETS: usize = 5;
/// The shortest webhook secret an admin may choose.
pub const MIN_WEBHOOK_SECRET: usize = 16;
const MAX_CLOSED_STATUSES: usize = 50;
/// A success does not rewrite `last_verified_at` more often than this (one store write per call is wasteful).
const VERIFIED_REFRESH: time::Duration = time::Duration::minutes(1);

/// The connection use cases, over their own ports. Cloning shares them.
#[derive(Clone)]
pub struct Connections {
    store: Arc<dyn ConnectionStore>,
    secrets: Arc<dyn SecretStore>,
    systems: Arc<dyn TicketSystems>,
    grants: Arc<dyn GrantStore>,
    clock: Arc<dyn Clock>,
    /// When this container last recorded a delivery per connection (webhook health, [`health`]).
    deliveries_noted: Arc<std::sync::Mutex<std::collections::HashMap<String, OffsetDateTime>>>,
}

/// The body of `POST /v1/connections` and `PATCH /v1/connections/{id}`. Which fields apply depends on `kind`
/// (DESIGN §6); a field that does not apply is refused rather than ignored. A secret sent back as `"********"`
/// means "keep the current one".
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInput {
    /// Required on create; on PATCH, when present, it must equal the id in the path.
    #[serde(default)]
    pub id: Option<String>,
    /// Required on create; it cannot change.
    #[serde(default)]
    pub kind: Option<ConnectionKind>,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Jira Cloud: `acme` or `acme.atlassian.net`, in place of `base_url`.
    #[serde(default)]
    pub site: Option<String>,
    /// Freshservice: `acme` or `acme.freshservice.com`, in place of `base_url`.
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub api_token: Option<Secret>,
    #[serde(default)]
    pub personal_access_token: Option<Secret>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Replaces every active webhook secret (create: generated when absent).
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// PATCH: adds a webhook secret, keeping the others active (the start of a rotation).
    #[serde(default)]
    pub add_webhook_secret: Option<Secret>,
    /// PATCH: adds a generated webhook secret, shown once in the answer.
    #[serde(default)]
    pub new_webhook_secret: bool,
    /// PATCH: keeps only the most recently added webhook secret (the end of a rotation).
    #[serde(default)]
    pub retire_old_webhook_secrets: bool,
    /// Jira: status names; Freshservice: status numbers (default `[4, 5]`).
    #[serde(default)]
    pub closed_statuses: Option<Vec<serde_json::Value>>,
    /// Audit tickets (DESIGN §8): Jira `{project, issue_type?}`, Freshservice `{group_id?, priority?}`; on PATCH,
    /// `null` turns them off and an absent field keeps them.
    #[serde(default, deserialize_with = "writes::present")]
    pub audit: Option<Option<AuditSettings>>,
    /// People mapped to their account in the ticket system (e-mail → account id), for requesters whose address
    /// the ticket system hides. On PATCH the entries are merged: a `null` value removes that person.
    #[serde(default)]
    pub people: Option<BTreeMap<String, Option<String>>>,
}

impl ConnectionInput {
    /// The credential fields, for the ticket system to check.
    fn credential_fields(&self) -> CredentialFields {
        CredentialFields {
            email: self.email.clone(),
            api_token: self.api_token.clone(),
            personal_access_token: self.personal_access_token.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            api_key: self.api_key.clone(),
        }
    }
}

/// A webhook secret in an answer: masked, except right after Ticketbound generated it.
#[derive(Clone)]
enum Shown {
    Masked,
    Revealed(Secret),
}

impl Serialize for Shown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Masked => s.serialize_str(MASK),
            // The one place a webhook secret leaves Ticketbound: the answer to the admin who created it.
            Self::Revealed(secret) => s.serialize_str(secret.expose()),
        }
    }
}

/// A connection as the API shows it: settings with every secret masked, and its authorization status.
#[derive(Clone, Serialize)]
pub struct ConnectionView {
    pub id: String,
    pub kind: ConnectionKind,
    pub base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_token: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    personal_access_token: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<&'static str>,
    webhook_secret: Shown,
    pub webhook_secrets_active: usize,
    pub closed_statuses: ClosedStatuses,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSettings>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub people: BTreeMap<String, String>,
    pub status: AuthStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_verified_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    /// When an authentic webhook delivery last arrived (recorded at most once a minute per container).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_delivery_at: Option<OffsetDateTime>,
    /// `ok`, `warning` (reconciliation found a closing no delivery announced, within the last 7 days) or
    /// `unknown` (no delivery yet).
    pub webhook_health: WebhookHealth,
    /// The last closing reconciliation found without a delivery: `{"at": "...", "ticket": "SEC-42"}`.
    pub last_missed_closing: Option<MissedClosing>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// `verify` only: whether the credentials worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// `verify` only: the account the credentials act as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Person>,
    /// `verify` only (Jira): a sample of the projects the credentials see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<ProjectSummary>>,
}

impl ConnectionView {
    fn of(connection: &Connection, now: OffsetDateTime) -> Self {
        let s = &connection.settings;
        let masked = |method: AuthMethod| (s.auth_method == method).then_some(MASK);
        Self {
            id: s.id.clone(),
            kind: s.kind,
            base_url: s.base_url.clone(),
            email: s.email.clone(),
            username: s.username.clone(),
            api_token: masked(AuthMethod::ApiToken),
            personal_access_token: masked(AuthMethod::PersonalAccessToken),
            password: masked(AuthMethod::Password),
            api_key: masked(AuthMethod::ApiKey),
            webhook_secret: Shown::Masked,
            webhook_secrets_active: s.webhook_secrets_active,
            closed_statuses: s.closed_statuses.clone(),
            audit: s.audit.clone(),
            people: s.people.clone(),
            status: connection.auth.status,
            last_verified_at: connection.auth.last_verified_at,
            last_error: connection.auth.last_error.clone(),
            last_delivery_at: connection.webhook.last_delivery_at,
            webhook_health: connection.webhook.health(now),
            last_missed_closing: connection.webhook.last_missed_closing.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            verified: None,
            account: None,
            projects: None,
        }
    }

    fn revealing(mut self, secret: Option<Secret>) -> Self {
        if let Some(secret) = secret {
            self.webhook_secret = Shown::Revealed(secret);
        }
        self
    }
}

/// A connection ready for calls.
struct Session {
    connection: Connection,
    system: Arc<dyn TicketSystem>,
}

/// Why a session could not open.
enum OpenError {
    Unknown,
    Unavailable(String),
}

impl Connections {
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        secrets: Arc<dyn SecretStore>,
        systems: Arc<dyn TicketSystems>,
        grants: Arc<dyn GrantStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            secrets,
            systems,
            grants,
            clock,
            deliveries_noted: Arc::default(),
        }
    }

    /// `GET /v1/connections`.
    pub async fn list(
        &self,
        caller: &Caller,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ConnectionView>, ServiceError> {
        super::require_admin(caller, "manage connections")?;
        let page = self.store.list_connections(limit, cursor).await?;
        Ok(Page {
            items: {
                let now = self.clock.now();
                page.items
                    .iter()
                    .map(|c| ConnectionView::of(c, now))
                    .collect()
            },
            next: page.next,
        })
    }

    /// `GET /v1/connections/{id}`.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<ConnectionView, ServiceError> {
        super::require_admin(caller, "manage connections")?;
        Ok(ConnectionView::of(&self.load(id).await?, self.clock.now()))
    }

    /// `POST /v1/connections`: validates everything before writing anything; the generated webhook secret is in
    /// the answer, and only there.
    pub async fn create(
        &self,
        caller: &Caller,
        input: ConnectionInput,
    ) -> Result<ConnectionView, ServiceError> {
        super::require_admin(caller, "manage connections")?;
        let id = input.id.clone().unwrap_or_default();
        if !is_slug(&id) {
            return Err(ServiceError::unprocessable(
                "invalid_id",
                "`id` is required: 1–64 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit",
            ));
        }
        let kind = input.kind.ok_or_else(|| {
            ServiceError::unprocessable(
                "missing_kind",
                "`kind` is required: jira_cloud, jira_data_center or freshservice",
            )
        })?;
        if input.add_webhook_secret.is_some()
            || input.new_webhook_secret
            || input.retire_old_webhook_secrets
        {
            return Err(ServiceError::unprocessable(
                "field_not_applicable",
                "`add_webhook_secret`, `new_webhook_secret` and `retire_old_webhook_secrets` rotate the secrets of an existing connection (PATCH); give `webhook_secret` or let one be generated",
            ));
        }
        let system = self.systems.kind(kind);
        let base_url = resolve_base_url(
            system,
            input.base_url.as_deref(),
            input.site.as_deref(),
            input.domain.as_deref(),
        )?
        .ok_or_else(|| {
            ServiceError::unprocessable(
                "missing_base_url",
                format!("{} is required", system.base_url_fields()),
            )
        })?;
        let checked = system
            .new_credentials(&input.credential_fields())
            .map_err(settings_error)?;
        let (credentials, email, username) = (checked.credentials, checked.email, checked.username);
        let closed_statuses = match input.closed_statuses {
            Some(values) => parse_closed_statuses(system, &values)?,
            None => system.default_closed_statuses(),
        };
        let audit = writes::check_audit(system, input.audit.clone().flatten())?;
        let people = merge_people(BTreeMap::new(), input.people.as_ref())?;
        let (webhook_secret, generated) = match input.webhook_secret {
            Some(s) => (check_webhook_secret(s)?, None),
            None => {
                let s = Secret::new(new_secret());
                (s.clone(), Some(s))
            }
        };
        let now = self.clock.now();
        let connection = Connection {
            settings: ConnectionSettings {
                id: id.clone(),
                kind,
                base_url,
                auth_method: credentials.method(),
                email,
                username,
                closed_statuses,
                webhook_secrets_active: 1,
                created_at: now,
                updated_at: now,
                audit,
                people,
            },
            auth: AuthState::new(),
            webhook: WebhookActivity::default(),
        };
        let secrets = ConnectionSecrets {
            credentials,
            webhook_secrets: vec![webhook_secret],
        };
        // The settings first: their conditional insert is what refuses a taken id, before any secret is written.
        self.store
            .insert_connection(&connection)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => ServiceError::conflict(
                    "connection_exists",
                    format!("there is already a connection `{id}`; change it with PATCH"),
                ),
                other => other.into(),
            })?;
        if let Err(e) = self.secrets.put(&id, &secrets).await {
            // Undo, so a failed create leaves nothing behind.
            if let Err(undo) = self.store.delete_connection(&id).await {
                tracing::error!(connection = %id, error = %undo, "could not undo a half-created connection");
            }
            return Err(secret_store_error(e));
        }
        tracing::info!(connection = %id, kind = kind.as_str(), admin = %caller.email, "connection created");
        Ok(ConnectionView::of(&connection, self.clock.now()).revealing(generated))
    }

    /// `PATCH /v1/connections/{id}`: changes the given fields (credentials rotate here), validating all of them
    /// before writing anything. The status is left as it is until the next call or `verify`.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        input: ConnectionInput,
    ) -> Result<ConnectionView, ServiceError> {
        super::require_admin(caller, "manage connections")?;
        let mut connection = self.load(id).await?;
        let kind = connection.settings.kind;
        if input.id.as_deref().is_some_and(|body_id| body_id != id) {
            return Err(ServiceError::unprocessable(
                "id_mismatch",
                "the `id` in the body differs from the one in the path; ids cannot change",
            ));
        }
        if input.kind.is_some_and(|k| k != kind) {
            return Err(ServiceError::unprocessable(
                "kind_mismatch",
                format!(
                    "connection `{id}` is {}; the kind cannot change (create a new connection)",
                    kind.as_str()
                ),
            ));
        }
        let system = self.systems.kind(kind);
        let mut settings = connection.settings.clone();
        if let Some(base_url) = resolve_base_url(
            system,
            input.base_url.as_deref(),
            input.site.as_deref(),
            input.domain.as_deref(),
        )? {
            settings.base_url = base_url;
        }
        if let Some(values) = &input.closed_statuses {
            settings.closed_statuses = parse_closed_statuses(system, values)?;
        }
        if let Some(audit) = &input.audit {
            settings.audit = writes::check_audit(system, audit.clone())?;
        }
        settings.people = merge_people(settings.people, input.people.as_ref())?;
        let current = self.secrets.get(id).await.map_err(secret_store_error)?;
        let checked = system
            .changed_credentials(
                &settings,
                current.as_ref().map(|c| &c.credentials),
                &input.credential_fields(),
            )
            .map_err(settings_error)?;
        let (credentials, email, username) = (checked.credentials, checked.email, checked.username);
        let mut webhook_secrets = current
            .as_ref()
            .map(|c| c.webhook_secrets.clone())
            .unwrap_or_default();
        let mut generated = None;
        if let Some(s) = input.webhook_secret.clone().filter(|s| !s.is_mask()) {
            webhook_secrets = vec![check_webhook_secret(s)?];
        }
        if let Some(s) = input.add_webhook_secret.clone() {
            webhook_secrets.push(check_webhook_secret(s)?);
        }
        if input.new_webhook_secret {
            let s = Secret::new(new_secret());
            webhook_secrets.push(s.clone());
            generated = Some(s);
        }
        if input.retire_old_webhook_secrets && webhook_secrets.len() > 1 {
            webhook_secrets.drain(..webhook_secrets.len() - 1);
        }
        if webhook_secrets.len() > MAX_WEBHOOK_SECRETS {
            return Err(ServiceError::unprocessable(
                "too_many_webhook_secrets",
                format!(
                    "at most {MAX_WEBHOOK_SECRETS} webhook secrets may be active; retire old ones with `retire_old_webhook_secrets: true`"
                ),
            ));
        }
        if webhook_secrets.is_empty() {
            // Only reachable when the secret entry was lost: a connection always keeps one.
            return Err(ServiceError::unprocessable(
                "missing_webhook_secret",
                "this connection has no webhook secret; give `webhook_secret` or `new_webhook_secret: true`",
            ));
        }
        settings.auth_method = credentials.method();
        settings.email = email;
        settings.username = username;
        settings.webhook_secrets_active = webhook_secrets.len();
        settings.updated_at = self.clock.now();
        let secrets = ConnectionSecrets {
            credentials,
            webhook_secrets,
        };
        if current.as_ref() != Some(&secrets) {
            self.secrets
                .put(id, &secrets)
                .await
                .map_err(secret_store_error)?;
        }
        if !self.store.update_settings(&settings).await? {
            return Err(connection_not_found(id));
        }
        connection.settings = settings;
        tracing::info!(connection = %id, admin = %caller.email, "connection changed");
        Ok(ConnectionView::of(&connection, self.clock.now()).revealing(generated))
    }

    /// `DELETE /v1/connections/{id}`: refused while pending or active grants are bound to it, unless `force`
    /// (those grants then keep their time bound only: no webhook of this connection can end them any more).
    pub async fn delete(&self, caller: &Caller, id: &str, force: bool) -> Result<(), ServiceError> {
        super::require_admin(caller, "manage connections")?;
        self.load(id).await?;
        if !force && let Some(grant) = self.open_grant_bound_to(id).await? {
            return Err(ServiceError::conflict(
                "connection_in_use",
                format!(
                    "grant {} ({}) is bound to a ticket of `{id}`; end it first, or delete with ?force=true",
                    grant.id,
                    grant.status.as_str()
                ),
            ));
        }
        // Secrets first: should the second step fail, what is left is a connection that cannot call anything,
        // and the DELETE can simply be repeated.
        self.secrets.delete(id).await.map_err(secret_store_error)?;
        self.store.delete_connection(id).await?;
        tracing::info!(connection = %id, admin = %caller.email, force, "connection deleted");
        Ok(())
    }

    /// `POST /v1/connections/{id}/verify`: checks the credentials now. The answer is the connection with what
    /// the credentials saw; refused credentials answer 200 with `verified: false` and the new status, an
    /// unreachable ticket system 503.
    pub async fn verify(&self, caller: &Caller, id: &str) -> Result<ConnectionView, ServiceError> {
        super::require_admin(caller, "manage connections")?;
        let mut session = self.open_for_api(id).await?;
        let result = session.system.verify().await;
        let result = self.observe(&mut session.connection, result, true).await;
        let mut view = ConnectionView::of(&session.connection, self.clock.now());
        match result {
            Ok(seen) => {
                view.verified = Some(true);
                view.account = Some(seen.account);
                view.projects = seen.projects;
                tracing::info!(connection = %id, admin = %caller.email, "connection verified");
                Ok(view)
            }
            Err(TicketSystemError::Unauthorized { .. }) => {
                view.verified = Some(false);
                Ok(view)
            }
            Err(e) => Err(system_error(id, e)),
        }
    }

    /// `GET /v1/tickets?connection=&q=`: the caller's open tickets, found by the caller's e-mail; `q` keeps those
    /// whose key or summary contains it (case-insensitive).
    pub async fn my_tickets(
        &self,
        caller: &Caller,
        connection: &str,
        q: Option<&str>,
    ) -> Result<Page<TicketSummary>, ServiceError> {
        let mut session = self.open_for_api(connection).await?;
        let person = match session.connection.settings.people.get(&caller.email) {
            Some(id) => PersonLookup::Found(mapped_person(id, &caller.email)),
            None => {
                let found = session.system.find_person(&caller.email).await;
                self.observe(&mut session.connection, found, false)
                    .await
                    .map_err(|e| system_error(connection, e))?
            }
        };
        let person = match person {
            PersonLookup::Found(person) => person,
            PersonLookup::NotFound => {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
            PersonLookup::Unverifiable => {
                return Err(ServiceError::unprocessable(
                    "requester_not_verifiable",
                    unverifiable_message(connection, &caller.email, None),
                ));
            }
        };
        let listed = session.system.open_tickets_for(&person).await;
        let mut items = self
            .observe(&mut session.connection, listed, false)
            .await
            .map_err(|e| system_error(connection, e))?;
        if let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) {
            let q = q.to_lowercase();
            items.retain(|t| {
                t.key.to_lowercase().contains(&q) || t.summary.to_lowercase().contains(&q)
            });
        }
        Ok(Page { items, next: None })
    }

    /// For the webhook handlers: the connection's settings and active webhook secrets; `None` when there is no
    /// such connection (answer 404). An error means the stores could not be read (answer 5xx so the sender
    /// retries).
    pub async fn webhook_secrets(
        &self,
        id: &str,
    ) -> Result<Option<(ConnectionSettings, WebhookSecrets)>, ServiceError> {
        if !is_slug(id) {
            return Ok(None);
        }
        let Some(connection) = self.store.get_connection(id).await? else {
            return Ok(None);
        };
        let secrets = self.secrets.get(id).await.map_err(secret_store_error)?;
        let active = secrets.map(|s| s.webhook_secrets).unwrap_or_default();
        Ok(Some((connection.settings, WebhookSecrets(active))))
    }

    /// For the verified-delivery extractors: the connection and its active webhook secrets when it exists and
    /// its deliveries arrive from `source`; `None` answers 404.
    pub async fn webhook_target(
        &self,
        id: &str,
        source: WebhookSource,
    ) -> Result<Option<(ConnectionSettings, WebhookSecrets)>, ServiceError> {
        Ok(self
            .webhook_secrets(id)
            .await?
            .filter(|(settings, _)| self.systems.kind(settings.kind).webhook_source() == source))
    }

    /// For the webhook handlers: the ticket as the ticket system has it now (`None`: gone).
    pub async fn read_ticket(
        &self,
        ticket: &TicketRef,
    ) -> Result<Option<Ticket>, TicketCheckError> {
        let mut session = self.open_for_check(&ticket.connection).await?;
        let read = session.system.get_ticket(&ticket.key).await;
        self.observe(&mut session.connection, read, false)
            .await
            .map_err(|e| unavailable_check(&ticket.connection, e))
    }

    /// For the webhook handlers: whether the ticket is open, closed or deleted (DESIGN §1 rule 9), confirmed with
    /// the ticket system. An unreachable ticket system is an error, never a guess.
    pub async fn ticket_state(&self, ticket: &TicketRef) -> Result<TicketState, TicketCheckError> {
        Ok(TicketState::of(self.read_ticket(ticket).await?.as_ref()))
    }

    async fn load(&self, id: &str) -> Result<Connection, ServiceError> {
        if !is_slug(id) {
            return Err(connection_not_found(id));
        }
        self.store
            .get_connection(id)
            .await?
            .ok_or_else(|| connection_not_found(id))
    }

    async fn open(&self, id: &str) -> Result<Session, OpenError> {
        if !is_slug(id) {
            return Err(OpenError::Unknown);
        }
        let connection = self
            .store
            .get_connection(id)
            .await
            .map_err(|e| OpenError::Unavailable(e.to_string()))?
            .ok_or(OpenError::Unknown)?;
        let secrets = self
            .secrets
            .get(id)
            .await
            .map_err(|e| OpenError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                OpenError::Unavailable(format!(
                    "connection `{id}` has no stored credentials; an admin must set them again with PATCH"
                ))
            })?;
        let system = self
            .systems
            .connect(&connection.settings, &secrets)
            .map_err(|e| OpenError::Unavailable(e.to_string()))?;
        Ok(Session { connection, system })
    }

    async fn open_for_api(&self, id: &str) -> Result<Session, ServiceError> {
        self.open(id).await.map_err(|e| match e {
            OpenError::Unknown => connection_not_found(id),
            OpenError::Unavailable(m) => ServiceError::unavailable("ticket_system_unavailable", m),
        })
    }

    async fn open_for_check(&self, id: &str) -> Result<Session, TicketCheckError> {
        self.open(id).await.map_err(|e| match e {
            OpenError::Unknown => TicketCheckError::UnknownConnection(id.to_owned()),
            OpenError::Unavailable(m) => TicketCheckError::Unavailable(m),
        })
    }

    /// Records what a call said about the credentials, then hands its result on. A failure to record is
    /// logged, never allowed to change the caller's answer.
    async fn observe<T>(
        &self,
        connection: &mut Connection,
        result: Result<T, TicketSystemError>,
        always: bool,
    ) -> Result<T, TicketSystemError> {
        let now = self.clock.now();
        let auth = &connection.auth;
        let next = match &result {
            Ok(_) => {
                let fresh = auth.status == AuthStatus::Connected
                    && auth.last_error.is_none()
                    && auth
                        .last_verified_at
                        .is_some_and(|at| now - at < VERIFIED_REFRESH);
                (always || !fresh).then(|| auth.succeeded(now))
            }
            Err(e @ TicketSystemError::Unauthorized { .. }) => {
                Some(auth.auth_failed(&e.to_string()))
            }
            Err(e) => Some(auth.unreachable(&e.to_string())),
        };
        if let Some(next) = next {
            if next.status != connection.auth.status {
                tracing::warn!(connection = %connection.settings.id, from = ?connection.auth.status, to = ?next.status, "connection status changed");
            }
            match self.store.update_auth(&connection.settings.id, &next).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(connection = %connection.settings.id, error = %e, "could not record the connection's status")
                }
            }
            connection.auth = next;
        }
        result
    }

    async fn open_grant_bound_to(
        &self,
        connection: &str,
    ) -> Result<Option<crate::domain::Grant>, ServiceError> {
        super::first_open_grant(&*self.grants, |g| {
            g.ticket
                .as_ref()
                .is_some_and(|t| t.connection == connection)
        })
        .await
    }
}

#[async_trait]
impl TicketVerifier for Connections {
    /// Rule 3: the ticket exists, is not closed, and is assigned to the requester, matched by e-mail (directly
    /// when the ticket system shows the assignee's e-mail, otherwise through the person that e-mail finds).
    async fn check_binding(
        &self,
        ticket: &TicketRef,
        requester_email: &str,
    ) -> Result<Option<String>, TicketCheckError> {
        let mut session = self.open_for_check(&ticket.connection).await?;
        let read = session.system.get_ticket(&ticket.key).await;
        let found = self
            .observe(&mut session.connection, read, false)
            .await
            .map_err(|e| unavailable_check(&ticket.connection, e))?;
        let Some(found) = found else {
            return Err(TicketCheckError::NotFound(
                ticket.key.clone(),
                ticket.connection.clone(),
            ));
        };
        if found.closed {
            return Err(TicketCheckError::Closed(ticket.key.clone()));
        }
        let stable_id = found.id;
        let Some(assignee) = found.assignee else {
            return Err(TicketCheckError::Unassigned(ticket.key.clone()));
        };
        if assignee.has_email(requester_email) {
            return Ok(stable_id);
        }
        let requester = normalize_email(requester_email);
        let lookup = match session.connection.settings.people.get(&requester) {
            // The admin's word is exact: it is compared, never searched.
            Some(id) => PersonLookup::Found(mapped_person(id, &requester)),
            // A visible address that is not the requester's: somebody else.
            None if assignee.email.is_some() => PersonLookup::NotFound,
            None => {
                let lookup = session.system.find_person(&requester).await;
                match self
                    .observe(&mut session.connection, lookup, false)
                    .await
                    .map_err(|e| unavailable_check(&ticket.connection, e))?
                {
                    PersonLookup::NotFound => PersonLookup::Unverifiable,
                    other => other,
                }
            }
        };
        match lookup {
            PersonLookup::Found(person) if person.id == assignee.id => Ok(stable_id),
            PersonLookup::Unverifiable => Err(TicketCheckError::RequesterNotVerifiable(
                ticket.key.clone(),
                unverifiable_message(&ticket.connection, &requester, Some(&ticket.key)),
            )),
            PersonLookup::Found(_) | PersonLookup::NotFound => {
                let who = assignee
                    .display_name
                    .or(assignee.email)
                    .unwrap_or_else(|| format!("another person (id {})", assignee.id));
                Err(TicketCheckError::NotAssigned(ticket.key.clone(), who))
            }
        }
    }
}

/// A requester as an admin mapped them on the connection.
fn mapped_person(id: &str, email: &str) -> Person {
    Person {
        id: id.to_owned(),
        email: Some(email.to_owned()),
        display_name: None,
    }
}

/// Why a requester could not be matched exactly, and the one way to fix it.
fn unverifiable_message(connection: &str, email: &str, key: Option<&str>) -> String {
    let what = match key {
        Some(key) => format!("ticket {key} is assigned to an account whose e-mail address"),
        None => "the accounts that match your e-mail address have addresses that".to_owned(),
    };
    format!(
        "{what} connection `{connection}` hides, and no account there shows exactly `{email}`, so Ticketbound cannot tell whether it is you (the ticket system's user search also matches longer addresses); an admin can map the address to its account: PATCH /v1/connections/{connection} with {{\"people\": {{\"{email}\": \"<account id>\"}}}}"
    )
}

/// Most people one connection maps by hand (the mapping lives in the connection's settings item).
pub const MAX_PEOPLE: usize = 1000;

/// Applies `input` (e-mail → account id, `null` removes) to the mapping, checking every entry first.
fn merge_people(
    mut people: BTreeMap<String, String>,
    input: Option<&BTreeMap<String, Option<String>>>,
) -> Result<BTreeMap<String, String>, ServiceError> {
    let invalid = |m: String| ServiceError::unprocessable("invalid_people", m);
    for (email, id) in input.into_iter().flatten() {
        let email_key = normalize_email(email);
        if !looks_like_email(&email_key) {
            return Err(invalid(format!(
                "`people` maps e-mail addresses to account ids; `{}` is not an e-mail address",
                email.chars().take(80).collect::<String>()
            )));
        }
        match id.as_deref().map(str::trim) {
            None => {
                people.remove(&email_key);
            }
            Some(id)
                if !id.is_empty()
                    && id.len() <= 128
                    && !id.chars().any(|c| c.is_control() || c.is_whitespace()) =>
            {
                people.insert(email_key, id.to_owned());
            }
            Some(_) => {
                return Err(invalid(format!(
                    "the account id of `{email_key}` must be 1 to 128 characters without spaces (a Jira accountId, a Data Center user name or a Freshservice agent id), or null to remove the mapping"
                )));
            }
        }
    }
    if people.len() > MAX_PEOPLE {
        return Err(invalid(format!(
            "at most {MAX_PEOPLE} people may be mapped on one connection"
        )));
    }
    Ok(people)
}

fn connection_not_found(id: &str) -> ServiceError {
    ServiceError::not_found(
        "connection_not_found",
        format!("there is no connection `{id}`"),
    )
}

fn secret_store_error(e: SecretStoreError) -> ServiceError {
    match e {
        SecretStoreError::Unavailable(m) => ServiceError::unavailable(
            "secret_store_unavailable",
            format!("the secret store could not be reached ({m}); nothing was changed, try again"),
        ),
        SecretStoreError::Corrupt(m) | SecretStoreError::Rejected(m) => ServiceError::internal(m),
    }
}

/// A ticket-system failure as the portal API answers it: always 503, since it is not the caller's doing.
fn system_error(id: &str, e: TicketSystemError) -> ServiceError {
    match e {
        TicketSystemError::Unauthorized { .. } => ServiceError::unavailable(
            "connection_needs_reauthorization",
            format!(
                "the ticket system refused the credentials of connection `{id}`; an admin must update them (PATCH /v1/connections/{id}) and verify"
            ),
        ),
        other => ServiceError::unavailable(
            "ticket_system_unavailable",
            format!("connection `{id}`: {other}"),
        ),
    }
}

fn unavailable_check(id: &str, e: TicketSystemError) -> TicketCheckError {
    match e {
        TicketSystemError::Unauthorized { .. } => TicketCheckError::Unavailable(format!(
            "the ticket system refused the credentials of connection `{id}`; an admin must update them"
        )),
        other => TicketCheckError::Unavailable(other.to_string()),
    }
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::unprocessable(code, message)
}

fn not_applicable(field: &str, kind: ConnectionKind) -> ServiceError {
    unprocessable(
        "field_not_applicable",
        format!("`{field}` does not apply to a {} connection", kind.as_str()),
    )
}

/// A ticket system's refusal of the settings given: a 422 with its code.
fn settings_error(e: SettingsError) -> ServiceError {
    unprocessable(e.code, e.message)
}

/// The base URL from whichever of `base_url`, `site` (Jira Cloud) or `domain` (Freshservice) is given; `None`
/// when none is. It must pass the outbound URL policy and carry no query or fragment.
fn resolve_base_url(
    system: &dyn TicketSystemKind,
    base_url: Option<&str>,
    site: Option<&str>,
    domain: Option<&str>,
) -> Result<Option<String>, ServiceError> {
    let host_field = system.host_form().map(|h| h.field);
    for (field, given) in [("site", site.is_some()), ("domain", domain.is_some())] {
        if given && host_field != Some(field) {
            return Err(not_applicable(field, system.kind()));
        }
    }
    let host_form = site.or(domain);
    if base_url.is_some() && host_form.is_some() {
        return Err(unprocessable(
            "ambiguous_base_url",
            "give either `base_url` or the site/domain, not both",
        ));
    }
    let raw = match (base_url, host_form) {
        (Some(url), _) => url.trim().to_owned(),
        (None, Some(host)) => {
            let host = host.trim().to_ascii_lowercase();
            let valid = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && !host.starts_with(['-', '.'])
                && !host.ends_with(['-', '.']);
            if !valid {
                return Err(unprocessable(
                    "invalid_base_url",
                    format!(
                        "`{host}` is not a host name such as acme.atlassian.net or acme.freshservice.com"
                    ),
                ));
            }
            // Only a kind with a host form gets here (the checks above refuse the field otherwise).
            let suffix = system.host_form().map_or("", |h| h.suffix);
            if host.contains('.') {
                format!("https://{host}")
            } else {
                format!("https://{host}{suffix}")
            }
        }
        (None, None) => return Ok(None),
    };
    let url =
        check_outbound_url(&raw).map_err(|e| unprocessable("invalid_base_url", e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(unprocessable(
            "invalid_base_url",
            "the base URL must not carry a query or a fragment",
        ));
    }
    Ok(Some(url.as_str().trim_end_matches('/').to_owned()))
}

fn check_webhook_secret(secret: Secret) -> Result<Secret, ServiceError> {
    let value = secret.expose();
    if value.len() < MIN_WEBHOOK_SECRET
        || value.len() > 512
        || secret.is_mask()
        || !value.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(unprocessable(
            "invalid_webhook_secret",
            format!(
                "a webhook secret is {MIN_WEBHOOK_SECRET} to 512 printable ASCII characters without spaces (or leave it out to have one generated)"
            ),
        ));
    }
    Ok(secret)
}

/// `closed_statuses` as given: at most [`MAX_CLOSED_STATUSES`], in the form the ticket system writes them.
fn parse_closed_statuses(
    system: &dyn TicketSystemKind,
    values: &[serde_json::Value],
) -> Result<ClosedStatuses, ServiceError> {
    if values.len() > MAX_CLOSED_STATUSES {
        return Err(unprocessable(
            "invalid_closed_statuses",
            format!("at most {MAX_CLOSED_STATUSES} closed statuses"),
        ));
    }
    system.closed_statuses(values).map_err(settings_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::freshservice::Freshservice;
    use crate::adapters::jira::{JiraCloud, JiraDataCenter};

    const CLOUD: &dyn TicketSystemKind = &JiraCloud;
    const DATA_CENTER: &dyn TicketSystemKind = &JiraDataCenter;
    const FRESHSERVICE: &dyn TicketSystemKind = &Freshservice;

    #[test]
    fn a_site_or_domain_becomes_an_https_base_url() {
        let cloud = resolve_base_url(CLOUD, None, Some("acme"), None).unwrap();
        assert_eq!(cloud.as_deref(), Some("https://acme.atlassian.net"));
        let fs = resolve_base_url(FRESHSERVICE, None, None, Some("Acme.freshservice.com")).unwrap();
        assert_eq!(fs.as_deref(), Some("https://acme.freshservice.com"));
        let dc =
            resolve_base_url(DATA_CENTER, Some("https://jira.corp/jira/"), None, None).unwrap();
        assert_eq!(dc.as_deref(), Some("https://jira.corp/jira"));
    }

    #[test]
    fn unsafe_or_odd_base_urls_are_refused() {
        for (kind, url, site, domain) in [
            (CLOUD, Some("http://acme.atlassian.net"), None, None),
            (DATA_CENTER, Some("https://169.254.169.254/"), None, None),
            (DATA_CENTER, Some("https://jira.corp/?x=1"), None, None),
            (FRESHSERVICE, None, None, Some("acme.freshservice.com/x")),
            (DATA_CENTER, None, Some("acme"), None),
            (CLOUD, Some("https://a.atlassian.net"), Some("a"), None),
        ] {
            assert!(
                resolve_base_url(kind, url, site, domain).is_err(),
                "{url:?} {site:?} {domain:?}"
            );
        }
    }

    #[test]
    fn generated_webhook_secrets_are_revealed_only_when_asked() {
        let masked = serde_json::to_value(Shown::Masked).unwrap();
        assert_eq!(masked, MASK);
        let shown = serde_json::to_value(Shown::Revealed(Secret::new("abc"))).unwrap();
        assert_eq!(shown, "abc");
    }
}
