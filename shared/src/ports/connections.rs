//! The ports of ticket-system connections (DESIGN §6): where connections and their secrets are kept, and what a
//! ticket system answers.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

use super::{Page, StoreError};
use crate::domain::connection::{
    AuthState, ClosedStatuses, Connection, ConnectionKind, ConnectionSecrets, ConnectionSettings,
    Credentials, KindFields, MissedClosing, Person, PersonLookup, Ticket, TicketPage, TicketQuery,
    TicketState, TicketSummary, Verification, WebhookSecrets,
};
use crate::domain::identity::ClaimedIdentity;
use crate::domain::secret::Secret;
use crate::domain::ticket_events::Delivery;
use crate::domain::ticket_writes::{
    CloseOutcome, CreatedTicket, DestinationFields, NewTicket, TicketDestination,
};

/// Connection settings and authorization status (never secrets).
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Writes a new connection; `AlreadyExists` if the id is taken.
    async fn insert_connection(&self, connection: &Connection) -> Result<(), StoreError>;
    /// Replaces the settings of an existing connection, leaving its status alone; `false` if there is none.
    async fn update_settings(&self, settings: &ConnectionSettings) -> Result<bool, StoreError>;
    /// Replaces the authorization status of an existing connection, leaving its settings alone; `false` if there
    /// is none (it was deleted meanwhile).
    async fn update_auth(&self, id: &str, auth: &AuthState) -> Result<bool, StoreError>;
    /// Replaces the settings only if they are stored at `version` (see [`VersionedConnection`]), leaving the
    /// status alone; the new version, or `Conflict` (nothing written) when they moved or the connection is gone.
    async fn update_settings_if(
        &self,
        settings: &ConnectionSettings,
        version: u64,
    ) -> Result<u64, StoreError>;
    /// A strongly consistent read.
    async fn get_connection(&self, id: &str) -> Result<Option<Connection>, StoreError>;
    /// A strongly consistent read with the version of the settings.
    async fn get_connection_versioned(
        &self,
        id: &str,
    ) -> Result<Option<VersionedConnection>, StoreError>;
    /// Connections by id, each with the version of its settings (what its entity tag is made from, so a list
    /// can offer the tag a single read would answer).
    async fn list_connections_versioned(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<VersionedConnection>, StoreError>;
    /// Connections by id.
    async fn list_connections(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Connection>, StoreError> {
        let page = self.list_connections_versioned(limit, cursor).await?;
        Ok(Page {
            items: page.items.into_iter().map(|c| c.connection).collect(),
            next: page.next,
        })
    }
    /// `false` when there was nothing to delete.
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError>;
    /// Deletes the connection only if its settings are stored at `version`, in one conditional write (an edit
    /// landing between a client's read and this delete is never lost); `Conflict` (nothing deleted) when they
    /// moved or the connection is gone.
    async fn delete_connection_if(&self, id: &str, version: u64) -> Result<(), StoreError>;
    /// Notes that an authentic webhook delivery arrived at `at` (webhook health), leaving settings and status
    /// alone; `false` if there is no such connection.
    async fn record_delivery(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
    /// Notes a closing that reconciliation found and no delivery had announced; `false` if there is no such
    /// connection.
    async fn record_missed_closing(
        &self,
        id: &str,
        missed: &MissedClosing,
    ) -> Result<bool, StoreError>;
}

/// A connection as stored, with the version of its settings: every settings write (`update_settings` and
/// `update_settings_if`) adds one, so two readers of one version know whether anybody changed the settings in
/// between. Status and webhook activity are not versioned: recording a call's outcome never makes an admin's
/// edit conflict. A new connection, and one stored before versions existed, is at version 1.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedConnection {
    pub connection: Connection,
    pub version: u64,
}

/// Why the secret store failed. Messages never hold a secret value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretStoreError {
    /// It could not be reached, throttled the call, failed on its side or timed out: retrying later can help.
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
    /// It refused the call for what it is (access denied, validation): a misconfiguration retrying would repeat.
    #[error("the secret store refused the call: {0}")]
    Rejected(String),
    /// What it holds for the connection is not readable (a manual edit, a bug).
    #[error("{0}")]
    Corrupt(String),
}

/// Credentials and webhook secrets, one entry per connection, and the signing secret of each resource's
/// `webhook` provisioner, one entry per resource (Secrets Manager on AWS, a 0600 file locally). The two never
/// share a name: connection and resource ids start with a letter or digit, the provisioner entries with `_`.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The connection's secrets, or `None` if none are stored.
    async fn get(&self, connection: &str) -> Result<Option<ConnectionSecrets>, SecretStoreError>;
    /// Creates or replaces the connection's secrets.
    async fn put(
        &self,
        connection: &str,
        secrets: &ConnectionSecrets,
    ) -> Result<(), SecretStoreError>;
    /// Deletes them; deleting what is not there succeeds.
    async fn delete(&self, connection: &str) -> Result<(), SecretStoreError>;
    /// The signing secret of `resource`'s webhook provisioner, or `None` if none is stored.
    async fn get_provisioner(&self, resource: &str) -> Result<Option<Secret>, SecretStoreError>;
    /// Creates or replaces it.
    async fn put_provisioner(
        &self,
        resource: &str,
        secret: &Secret,
    ) -> Result<(), SecretStoreError>;
    /// Deletes it; deleting what is not there succeeds.
    async fn delete_provisioner(&self, resource: &str) -> Result<(), SecretStoreError>;
}

/// Why a ticket-system call did not give an answer. Messages never hold a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketSystemError {
    /// 401 or 403: the credentials were refused (or lack a permission).
    #[error("the ticket system refused the connection's credentials (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Unreachable, timed out, or 5xx after the retries.
    #[error("the ticket system could not be reached: {0}")]
    Unavailable(String),
    /// 429 (or 503) asking to wait longer than a call may, or still busy after the retries; `retry_after` is
    /// what it asked for, when it said.
    #[error("the ticket system is rate limiting the connection: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Any other answer we cannot use (an unexpected status, a body of the wrong shape, a removed API).
    #[error("the ticket system answered unexpectedly: {0}")]
    Unexpected(String),
    /// 403 on one write: the credentials work, but their account may not do this one thing (a Jira transition
    /// it lacks the permission for, Freshservice's `bypass_mandatory` for a non-admin). The message names what
    /// to grant the account. Not a reason to re-authorize the connection.
    #[error("{0}")]
    NotPermitted(String),
    /// A page token (from a `GET /v1/tickets` cursor) that this ticket system does not accept.
    #[error("the page token is not valid: {0}")]
    InvalidPageToken(String),
}

/// One connection's ticket system, signed in with its credentials. Each read retries by itself
/// within bounds (429/503 with `Retry-After`, other 5xx and timeouts with jittered backoff).
#[async_trait]
pub trait TicketSystem: Send + Sync {
    /// Checks the credentials and says what they see.
    async fn verify(&self) -> Result<Verification, TicketSystemError>;
    /// One ticket; `None` when it does not exist (or is not visible to the connection).
    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError>;
    /// The account whose visible e-mail is exactly `email`; never an account found by a prefix of it or
    /// whose address is hidden ([`PersonLookup`]).
    async fn find_person(&self, email: &str) -> Result<PersonLookup, TicketSystemError>;
    /// Open tickets assigned to `person`, most recently updated first where the system sorts.
    async fn open_tickets_for(
        &self,
        person: &Person,
    ) -> Result<Vec<TicketSummary>, TicketSystemError>;
    /// One page of [`TicketSystem::open_tickets_for`], narrowed to `query.text` in the ticket system's own query
    /// language where it has one, with the token of the next page. The default lists everything in one page
    /// and narrows it here (key or summary containing the text, case-insensitive).
    async fn open_tickets_page(
        &self,
        person: &Person,
        query: &TicketQuery,
    ) -> Result<TicketPage, TicketSystemError> {
        if query.page.is_some() {
            return Err(TicketSystemError::InvalidPageToken(
                "this ticket system answers in one page".into(),
            ));
        }
        let mut items = self.open_tickets_for(person).await?;
        if let Some(text) = query.text.as_deref().map(str::to_lowercase) {
            items.retain(|t| {
                t.key.to_lowercase().contains(&text) || t.summary.to_lowercase().contains(&text)
            });
        }
        Ok(TicketPage { items, next: None })
    }
    /// The caller as an identity claim of their token names them in this ticket system (a Jira Cloud account
    /// id, a Data Center user name), checked exactly; `Ok(None)` when no claim applies here (the default), so
    /// the e-mail lookup decides.
    async fn find_claimed_person(
        &self,
        claimed: &ClaimedIdentity,
    ) -> Result<Option<PersonLookup>, TicketSystemError> {
        let _ = claimed;
        Ok(None)
    }

    // Reconciliation (DESIGN §2): re-reading the tickets of open bound grants in batches.

    /// How reconciliation should ask this ticket system: keys per [`TicketSystem::ticket_states`] call, and
    /// calls per run, so one run stays within the system's rate limits.
    fn reconcile_batch(&self) -> ReconcileBatch {
        ReconcileBatch {
            keys_per_call: 1,
            calls_per_run: 20,
        }
    }
    /// The state of each of `keys` (at most [`ReconcileBatch::keys_per_call`]), "closed" decided by the same
    /// rule as [`TicketSystem::get_ticket`]. A rate limit stops early: the answer then covers a prefix of
    /// `keys` and says how long to wait. The default reads the tickets one by one.
    async fn ticket_states(&self, keys: &[String]) -> Result<TicketStates, TicketSystemError> {
        let mut out = TicketStates::default();
        for key in keys {
            out.calls += 1;
            let ticket = self.get_ticket(key).await?;
            out.states
                .push((key.clone(), TicketState::of(ticket.as_ref())));
        }
        Ok(out)
    }

    // Writes (DESIGN §7 `ticket` provisioner, §8 audit tickets). A write is retried here only when the ticket
    // system certainly did not act (429/503, or no connection was made); any other failure is returned, and the
    // durable retry of the caller repeats it after [`TicketSystem::find_by_marker`]. The defaults refuse, so a
    // read-only implementation (a test fake) keeps compiling.

    /// Opens a ticket.
    async fn create_ticket(&self, ticket: &NewTicket) -> Result<CreatedTicket, TicketSystemError> {
        let _ = ticket;
        Err(not_writable())
    }
    /// The ticket carrying `marker` (a Jira label, a Freshservice tag), if one exists.
    async fn find_by_marker(
        &self,
        marker: &str,
    ) -> Result<Option<CreatedTicket>, TicketSystemError> {
        let _ = marker;
        Err(not_writable())
    }
    /// Adds a comment (Jira) or a private note (Freshservice); `Ok(false)` when the ticket does not exist.
    async fn add_comment(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        let _ = (key, text);
        Err(not_writable())
    }
    /// Closes a ticket (Jira: the transition into the `done` category; Freshservice: status 5).
    async fn close_ticket(&self, key: &str) -> Result<CloseOutcome, TicketSystemError> {
        let _ = key;
        Err(not_writable())
    }
}

/// How reconciliation batches its reads of one ticket system ([`TicketSystem::reconcile_batch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconcileBatch {
    pub keys_per_call: usize,
    pub calls_per_run: usize,
}

/// The answer to [`TicketSystem::ticket_states`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketStates {
    /// The state of each key answered, in the order asked.
    pub states: Vec<(String, TicketState)>,
    /// Set when the ticket system rate limited the reads: wait this long before asking it again.
    pub rate_limited: Option<Duration>,
    /// HTTP calls made.
    pub calls: usize,
}

fn not_writable() -> TicketSystemError {
    TicketSystemError::Unexpected("this ticket system client cannot write tickets".into())
}

/// Builds the [`TicketSystem`] of a connection from its settings and secrets, and tells what each kind of ticket
/// system means for its settings.
pub trait TicketSystems: Send + Sync {
    fn connect(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<Arc<dyn TicketSystem>, TicketSystemError>;
    /// The rules of one kind of ticket system. A kind no plug-in of this build has (a connection stored by a
    /// build that had it) gets rules that refuse every change and every call.
    fn kind(&self, kind: ConnectionKind) -> &'static dyn TicketSystemKind;
    /// Every kind of this build, in the order the portal offers them.
    fn kinds(&self) -> Vec<ConnectionKind>;
    /// The kind named `name` (as a request spells it), if this build has it.
    fn kind_named(&self, name: &str) -> Option<ConnectionKind> {
        self.kinds().into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Where a delivery for a connection of this kind arrives (`/webhooks/{path}/…`). Defined by the plug-in
/// (`adapters::jira::WEBHOOK_SOURCE`); kinds sharing one (Jira Cloud and Data Center) share its route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookSource {
    /// Its segment of the webhook URL.
    pub path: &'static str,
    /// The name in a 404's message.
    pub name: &'static str,
}

impl WebhookSource {
    /// Its segment of the webhook URL (`/webhooks/jira/…`).
    pub fn path_name(self) -> &'static str {
        self.path
    }

    /// The name in a 404's message.
    pub fn name(self) -> &'static str {
        self.name
    }
}

/// The headers of a delivery as a plug-in reads them.
pub trait DeliveryHeaders {
    /// A header that is there at all, readable or not: an unreadable (non-ASCII) value is `""`, which verifies
    /// against nothing, so a garbled proof is a wrong proof rather than an absent one.
    fn present(&self, name: &str) -> Option<&str>;
}

/// Why a delivery is not authentic: a short reason for the log, and the message of the 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryRefusal {
    pub reason: &'static str,
    pub message: &'static str,
}

/// How one kind's deliveries prove they come from its ticket system, and what they say (DESIGN §9). The one
/// webhook extractor asks these in order: [`DeliveryRules::proof_needs_body`] before reading anything,
/// [`DeliveryRules::authenticate`] (in constant time, through [`WebhookSecrets`]), and only then
/// [`DeliveryRules::interpret`].
pub trait DeliveryRules: Send + Sync {
    /// Whether this delivery's proof is judged on the raw body (a signature); when not, it is judged on the
    /// headers alone before the body is read, so an unauthenticated sender costs no memory.
    fn proof_needs_body(&self, headers: &dyn DeliveryHeaders) -> bool;
    /// Whether the delivery proves an active webhook secret of the connection; `body` is empty when
    /// [`DeliveryRules::proof_needs_body`] said no.
    fn authenticate(
        &self,
        settings: &ConnectionSettings,
        headers: &dyn DeliveryHeaders,
        body: &[u8],
        secrets: &WebhookSecrets,
    ) -> Result<(), DeliveryRefusal>;
    /// The authentic delivery's JSON body as a [`Delivery`] for `settings.id`; the error says, for a 400
    /// `unrecognized_delivery`, what is wrong and what to send instead.
    fn interpret(
        &self,
        settings: &ConnectionSettings,
        headers: &dyn DeliveryHeaders,
        body: &serde_json::Value,
    ) -> Result<Delivery, String>;
}

/// A host name an admin may give in place of `base_url` (`site` for Jira Cloud, `domain` for Freshservice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostForm {
    /// The input field: `site` or `domain`.
    pub field: &'static str,
    /// Added to a bare name (`acme` → `acme.atlassian.net`).
    pub suffix: &'static str,
}

/// Credentials checked for a kind, with the kind's non-secret settings to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedCredentials {
    pub credentials: Credentials,
    /// The kind's settings ([`ConnectionSettings::fields`]) as they are to be stored: every one of them, not
    /// only the changed ones.
    pub fields: KindFields,
}

/// Settings input a ticket system refuses: answered 422 with this code and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SettingsError {
    pub code: &'static str,
    pub message: String,
}

impl SettingsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What a kind of ticket system tells an admin who connects one (`GET /v1/connection-kinds`): the fields of
/// its settings form and how to register its webhook. The portal's Connect → Verify wizard is drawn from this
/// alone, so a new kind of ticket system brings its form with it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KindDescription {
    pub kind: ConnectionKind,
    /// The product's name as people say it (`Jira Cloud`).
    pub label: &'static str,
    /// Its settings form, in order, besides the fields every connection has (`id`, `closed_statuses`).
    pub fields: Vec<FieldDescription>,
    /// What `closed_statuses` holds for this kind, and what it is when none is given.
    pub closed_statuses: ClosedStatusesDescription,
    pub webhook: WebhookDescription,
}

/// One field of a kind's settings form.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldDescription {
    /// The JSON field of `POST /v1/connections`.
    pub name: &'static str,
    pub label: &'static str,
    /// A short hint shown under the field.
    pub help: &'static str,
    /// Sent to the API only on creation or when changed, shown masked, never echoed back.
    pub secret: bool,
    /// A new connection needs it (or, when [`FieldDescription::group`] is set, it or the rest of its group).
    pub required: bool,
    /// The value used when none is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<&'static str>,
    /// The only values it takes, when it is a choice.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub choices: &'static [&'static str],
    /// Alternative ways to sign in: fields of the same group are given together, and exactly one group is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'static str>,
}

impl FieldDescription {
    /// A plain text field.
    pub const fn text(name: &'static str, label: &'static str, help: &'static str) -> Self {
        Self {
            name,
            label,
            help,
            secret: false,
            required: true,
            default: None,
            choices: &[],
            group: None,
        }
    }

    /// A secret (a token, a password, a key).
    pub const fn secret(name: &'static str, label: &'static str, help: &'static str) -> Self {
        Self {
            secret: true,
            ..Self::text(name, label, help)
        }
    }

    /// Not needed.
    pub const fn optional(self) -> Self {
        Self {
            required: false,
            ..self
        }
    }

    /// One of the alternative sign-ins named `group`.
    pub const fn in_group(self, group: &'static str) -> Self {
        Self {
            group: Some(group),
            ..self
        }
    }
}

/// How a kind writes `closed_statuses`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClosedStatusesDescription {
    pub help: &'static str,
    /// What a connection that gives none counts as closed (on top of what the kind always counts).
    pub default: ClosedStatuses,
}

/// Where a kind's deliveries arrive and how an admin registers them in the ticket system.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WebhookDescription {
    /// The delivery URL's path, `{connection}` standing for the connection's id.
    pub path: &'static str,
    /// The registration steps, in order; `{url}` stands for the delivery URL and text between backticks is
    /// typed as is.
    pub steps: &'static [&'static str],
}

/// What one kind of ticket system means for the settings an admin gives (DESIGN §6): which credentials it
/// takes, how its closed statuses are written, where its tickets go and where its deliveries arrive.
/// Implemented once per ticket system in its own module (`adapters::jira`, `adapters::freshservice`) and chosen
/// by [`TicketSystems::kind`]; the service never branches on the kind itself.
pub trait TicketSystemKind: Send + Sync {
    fn kind(&self) -> ConnectionKind;
    /// What an admin connecting one needs to know: its form and its webhook registration.
    fn describe(&self) -> KindDescription;
    /// Where its deliveries arrive.
    fn webhook_source(&self) -> WebhookSource;
    /// How its deliveries are authenticated and read.
    fn deliveries(&self) -> &'static dyn DeliveryRules;
    /// The host-name field it accepts in place of `base_url`, if any.
    fn host_form(&self) -> Option<HostForm>;
    /// The field(s) that give the base URL, for the message when none is given.
    fn base_url_fields(&self) -> &'static str;
    /// The base URL of a connection that gives none, for a ticket system with one API for every customer
    /// (Linear's `https://api.linear.app`). Default: none, the base URL is required.
    fn default_base_url(&self) -> Option<&'static str> {
        None
    }
    /// The kind's own fields of a connection body (its credentials and settings such as `email` or
    /// `token_type`); any other kind's field is refused, never ignored. Every one of them is a string (or
    /// `null`), and the secret ones are those [`KindDescription::fields`] marks secret.
    fn credential_fields(&self) -> &'static [&'static str];
    /// The credentials and settings of a new connection from its body's kind fields: every required field
    /// given and valid.
    fn new_credentials(&self, given: &KindFields) -> Result<CheckedCredentials, SettingsError>;
    /// The credentials and settings after a change: given fields replace, absent (or masked) ones keep
    /// `current` and `settings.fields`.
    fn changed_credentials(
        &self,
        settings: &ConnectionSettings,
        current: Option<&Credentials>,
        given: &KindFields,
    ) -> Result<CheckedCredentials, SettingsError>;
    /// Settings the kind learns about a site (by `verify`) that no longer hold when the connection's base URL
    /// changes; they are then forgotten. Default: none.
    fn learned_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// `closed_statuses` as given (at most `MAX_CLOSED_STATUSES`, checked by the caller).
    fn closed_statuses(
        &self,
        values: &[serde_json::Value],
    ) -> Result<ClosedStatuses, SettingsError>;
    /// The closed statuses of a connection that gives none.
    fn default_closed_statuses(&self) -> ClosedStatuses;
    /// Where a new ticket goes, with the defaults filled in; the error says which field is wrong and why.
    fn destination(&self, fields: &DestinationFields<'_>) -> Result<TicketDestination, String>;
    /// The one spelling of a ticket key that this ticket system answers with, for a key as somebody typed it
    /// (Jira: `sec-42` is `SEC-42`; Freshservice: `053263` is `53263`). Grants are stored, and deliveries and
    /// reconciliation matched, under this form only, so a binding typed another way still ends by its webhook.
    /// Default: the key as given.
    fn canonical_key(&self, key: &str) -> String {
        key.to_owned()
    }
}
