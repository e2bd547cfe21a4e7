//! Ticket-system connections (DESIGN §6): their settings, their authorization status, their secrets, and what a
//! ticket system tells us about a ticket.
//!
//! A connection is split in two because the parts live in different places:
//! - [`ConnectionSettings`] and [`AuthState`] (no secret at all) live in the store and are shown to admins;
//! - [`ConnectionSecrets`] (credentials and webhook secrets) live in the secret store only, and every type
//!   holding them prints and serializes them as [`MASK`]. The secret store itself uses
//!   [`ConnectionSecrets::to_storage_json`] / [`ConnectionSecrets::from_storage_json`], the one explicit place
//!   where values are exposed.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::secret::Secret;

/// A kind of ticket system, by the name the API spells it (`jira_cloud`, `servicenow`). The kinds themselves are
/// plug-ins (`adapters::ticket_systems`): each defines its own name, and the shared layers carry it as a name
/// only, never branching on it. A name in a request is looked up in the registry before it becomes a kind; a
/// name read back from storage is taken as written (it was looked up when written).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionKind(&'static str);

impl ConnectionKind {
    /// The kind named `name`: for a plug-in's own constant.
    pub const fn named(name: &'static str) -> Self {
        Self(name)
    }

    /// Its name in the API (`kind`), the store and webhook messages.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Debug for ConnectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for ConnectionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for ConnectionKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        intern(&name).map(Self).map_err(serde::de::Error::custom)
    }
}

/// How a connection signs in to its ticket system, named by the plug-in (`api_token`, `password`). It is also
/// the name of the one secret field that holds the credential, so a list of connections can be shown (masked)
/// without reading any secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthMethod(&'static str);

impl AuthMethod {
    /// The method named `name`: for a plug-in's own constant.
    pub const fn named(name: &'static str) -> Self {
        Self(name)
    }

    /// Its name, which is also the name of its credential's field (`api_token`).
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for AuthMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for AuthMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        intern(&name).map(Self).map_err(serde::de::Error::custom)
    }
}

/// The most distinct names [`intern`] keeps.
const MAX_NAMES: usize = 64;

/// A kind or method name read from storage, as a `&'static str`: each distinct name is allocated once and
/// kept, so reading the same item again costs nothing. Only short `a-z0-9_` names are taken, and at most
/// [`MAX_NAMES`] of them: these names were written by Ticketbound, and request bodies never reach here
/// (they are looked up in the registry instead), so no sender can make it grow.
fn intern(name: &str) -> Result<&'static str, String> {
    use std::collections::BTreeSet;
    use std::sync::{Mutex, PoisonError};
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    if name.is_empty()
        || name.len() > 40
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("a kind or method name is 1 to 40 characters of a-z, 0-9 and `_`".into());
    }
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return Ok(known);
    }
    if names.len() >= MAX_NAMES {
        return Err("too many distinct kind or method names".into());
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Ok(leaked)
}

/// A kind's own settings and credential fields as JSON members (`email`, `username`, `token_type`): what the
/// plug-in reads into its typed settings and checks. The shared layers only carry them.
pub type KindFields = serde_json::Map<String, serde_json::Value>;

/// Which statuses count as closed (DESIGN §1 rule 9), on top of what the kind always counts as closed (Jira's
/// `done` category, Freshservice's deleted/spam flags). Some kinds name statuses, others number them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClosedStatuses {
    Names(Vec<String>),
    Numbers(Vec<u64>),
}

impl ClosedStatuses {
    /// Whether a Jira status name is listed (names compare case-insensitively, trimmed).
    pub fn has_name(&self, name: &str) -> bool {
        match self {
            Self::Names(names) => names
                .iter()
                .any(|n| n.trim().eq_ignore_ascii_case(name.trim())),
            Self::Numbers(_) => false,
        }
    }

    /// Whether a Freshservice status number is listed.
    pub fn has_number(&self, status: u64) -> bool {
        match self {
            Self::Numbers(numbers) => numbers.contains(&status),
            Self::Names(names) => names.iter().any(|n| n.trim() == status.to_string()),
        }
    }
}

/// A connection's settings: everything but secrets. What the store keeps and admins see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSettings {
    /// A slug (`jira-main`), used in ticket references and webhook URLs.
    pub id: String,
    pub kind: ConnectionKind,
    /// The site's root URL, without a trailing slash (it may carry a context path on Data Center).
    pub base_url: String,
    pub auth_method: AuthMethod,
    pub closed_statuses: ClosedStatuses,
    /// How many webhook secrets are active (the values are in the secret store).
    pub webhook_secrets_active: usize,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Where the audit ticket of every request goes (DESIGN §8); none when the connection opens no audit
    /// tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<super::ticket_writes::AuditSettings>,
    /// People an admin has mapped to their account in this ticket system: lower-cased e-mail → Jira
    /// `accountId` (Cloud) or user name (Data Center) or Freshservice agent id. The exact way to match a
    /// requester whose address the ticket system hides (see [`PersonLookup`]); it wins over a search.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub people: std::collections::BTreeMap<String, String>,
    /// The kind's own non-secret settings (`email`, `username`, Jira Cloud's `token_type`, what `verify` learnt
    /// such as `cloud_id`), stored and shown as members of the settings beside the shared ones. Only the
    /// kind's plug-in reads them.
    #[serde(flatten)]
    pub fields: KindFields,
}

/// Where a connection's REST calls went (`verify`'s `api`): some kinds reach one site two ways (Jira Cloud: the
/// site itself, or Atlassian's API gateway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRoute {
    /// The site's own URL (`base_url`).
    Site,
    /// A gateway in front of it.
    Gateway,
}

/// Whether a connection's credentials work (DESIGN §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatus {
    Connected,
    /// The last call got 401 or 403: an admin must rotate the credentials.
    NeedsReauthorization,
    /// Several consecutive authentication failures.
    Failed,
}

/// Consecutive authentication failures after which a connection is `failed`.
pub const FAILED_AFTER: u32 = 3;

/// A connection's authorization status, kept apart from its settings so that recording the outcome of a call
/// never overwrites an admin's concurrent change to the settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    pub status: AuthStatus,
    /// When the credentials were last seen working.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_verified_at: Option<OffsetDateTime>,
    /// The last failure, in words that never hold a secret; cleared by a success.
    pub last_error: Option<String>,
    pub consecutive_auth_failures: u32,
}

impl AuthState {
    /// A new connection: `connected` until a call says otherwise (it has not been verified yet, which
    /// `last_verified_at: null` tells).
    pub fn new() -> Self {
        Self {
            status: AuthStatus::Connected,
            last_verified_at: None,
            last_error: None,
            consecutive_auth_failures: 0,
        }
    }

    /// The state after a call that the ticket system accepted.
    pub fn succeeded(&self, now: OffsetDateTime) -> Self {
        Self {
            status: AuthStatus::Connected,
            last_verified_at: Some(now),
            last_error: None,
            consecutive_auth_failures: 0,
        }
    }

    /// The state after a 401 or 403: `needs_reauthorization`, then `failed` after [`FAILED_AFTER`] in a row.
    pub fn auth_failed(&self, error: &str) -> Self {
        let failures = self.consecutive_auth_failures.saturating_add(1);
        Self {
            status: if failures >= FAILED_AFTER {
                AuthStatus::Failed
            } else {
                AuthStatus::NeedsReauthorization
            },
            last_verified_at: self.last_verified_at,
            last_error: Some(error.to_owned()),
            consecutive_auth_failures: failures,
        }
    }

    /// The state after a call that did not reach a verdict on the credentials (timeout, 5xx): the status stays.
    pub fn unreachable(&self, error: &str) -> Self {
        Self {
            last_error: Some(error.to_owned()),
            ..self.clone()
        }
    }
}

impl Default for AuthState {
    fn default() -> Self {
        Self::new()
    }
}

/// A connection as stored: settings, authorization status and webhook health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub settings: ConnectionSettings,
    pub auth: AuthState,
    pub webhook: WebhookActivity,
}

/// What is known about a connection's webhook: when an authentic delivery last arrived, and the last closing
/// that reconciliation found without a delivery. Each is written on its own, never with the settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookActivity {
    pub last_delivery_at: Option<OffsetDateTime>,
    pub last_missed_closing: Option<MissedClosing>,
}

/// A closing that reconciliation found and no webhook delivery had announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedClosing {
    /// When reconciliation found it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The ticket's key.
    pub ticket: String,
}

/// `webhook_health` in the connection JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookHealth {
    /// Deliveries arrive and reconciliation found no missed closing lately.
    Ok,
    /// Reconciliation found a closing that no delivery announced within [`WebhookActivity::WARNING_FOR`].
    Warning,
    /// No delivery has arrived yet and nothing was missed: the webhook may not be registered.
    Unknown,
}

impl WebhookActivity {
    /// How long one missed closing keeps the warning up: deliveries arriving meanwhile do not prove that the
    /// webhook sees every closing (a project filter, a workflow that skips the event), so only time clears it.
    pub const WARNING_FOR: time::Duration = time::Duration::days(7);

    /// The health at `now`.
    pub fn health(&self, now: OffsetDateTime) -> WebhookHealth {
        match (&self.last_missed_closing, self.last_delivery_at) {
            (Some(missed), _) if now - missed.at < Self::WARNING_FOR => WebhookHealth::Warning,
            (_, Some(_)) => WebhookHealth::Ok,
            (Some(_), None) => WebhookHealth::Warning,
            (None, None) => WebhookHealth::Unknown,
        }
    }
}

/// A connection's credential: how it signs in and the one secret that does it (an API token, a password, a
/// client secret). Non-secret parts (an e-mail, a user name, a client id) are the kind's settings. `Debug` and
/// `Serialize` mask the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Credentials {
    pub method: AuthMethod,
    #[serde(rename = "credential")]
    pub secret: Secret,
}

impl Credentials {
    pub fn new(method: AuthMethod, secret: Secret) -> Self {
        Self { method, secret }
    }

    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// The secret value itself (for building an `Authorization` header).
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

/// Everything secret about one connection: one Secrets Manager secret (or one entry of the local file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSecrets {
    pub credentials: Credentials,
    /// Every webhook secret currently accepted, oldest first (several during a rotation).
    pub webhook_secrets: Vec<Secret>,
}

/// The stored form: plain strings, only ever written to the secret store.
#[derive(Serialize, Deserialize)]
struct StoredSecrets {
    method: AuthMethod,
    credential: String,
    webhook_secrets: Vec<String>,
}

/// A secret store held something that is not a connection's secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the stored connection secret is unreadable: {0}")]
pub struct UnreadableSecrets(pub String);

impl ConnectionSecrets {
    /// The JSON kept in the secret store, with values exposed. Never log or return it.
    pub fn to_storage_json(&self) -> String {
        let stored = StoredSecrets {
            method: self.credentials.method(),
            credential: self.credentials.secret().expose().to_owned(),
            webhook_secrets: self
                .webhook_secrets
                .iter()
                .map(|s| s.expose().to_owned())
                .collect(),
        };
        serde_json::to_string(&stored).expect("plain strings serialize")
    }

    /// Reads [`Self::to_storage_json`]'s output back. The error never quotes the value.
    pub fn from_storage_json(json: &str) -> Result<Self, UnreadableSecrets> {
        let stored: StoredSecrets = serde_json::from_str(json).map_err(|e| {
            UnreadableSecrets(format!(
                "not the expected JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        Ok(Self {
            credentials: Credentials::new(stored.method, Secret::new(stored.credential)),
            webhook_secrets: stored
                .webhook_secrets
                .into_iter()
                .map(Secret::new)
                .collect(),
        })
    }
}

/// The webhook secrets a connection accepts, for the webhook handlers (DESIGN §9). Every comparison is
/// constant-time and tries every active secret, so a rotation needs no downtime.
#[derive(Clone, Debug)]
pub struct WebhookSecrets(pub Vec<Secret>);

impl WebhookSecrets {
    /// Whether `presented` (an `X-Ticketbound-Secret` header, or a Basic auth user name or password) is one of
    /// the active secrets.
    pub fn accepts_shared_secret(&self, presented: &str) -> bool {
        super::webhook_auth::shared_secret_matches(&self.0, presented)
    }

    /// Whether `header` (`X-Hub-Signature: sha256=<hex>`) is the HMAC-SHA256 of `body` under an active secret.
    pub fn accepts_hub_signature(&self, header: &str, body: &[u8]) -> bool {
        super::webhook_auth::hub_signature_matches(&self.0, header, body)
    }
}

/// What a ticket system said about one ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The key as Ticketbound uses it: `SEC-42`, or a Freshservice numeric id as text.
    pub key: String,
    /// The ticket's stable id where the system has one besides the key (a Jira issue id, which survives a move
    /// to another project that changes the key); `None` for Freshservice, whose key is its id.
    pub id: Option<String>,
    pub summary: String,
    /// The status as people read it (`In Progress`, `Resolved`).
    pub status: String,
    /// Closed by DESIGN §1 rule 9 (a deleted or spam Freshservice ticket included).
    pub closed: bool,
    /// Freshservice's `deleted` or `spam`: the ticket is gone rather than closed.
    pub deleted: bool,
    pub assignee: Option<Person>,
    /// Where a person opens the ticket.
    pub url: String,
}

/// A person in a ticket system: Jira `accountId` (Cloud) or user name (Data Center); Freshservice agent id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    /// A real e-mail address as the ticket system shows it. Absent where the system hides it (Jira Cloud
    /// profile visibility, Data Center "hidden"), masks it (Data Center "masked": `alice at example dot com`)
    /// or does not embed it: adapters never put anything here that is not an address.
    pub email: Option<String>,
    pub display_name: Option<String>,
}

impl Person {
    /// Whether the ticket system shows this person's address and it is exactly `email` (case-insensitive).
    pub fn has_email(&self, email: &str) -> bool {
        self.email
            .as_deref()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
    }
}

/// An address as a ticket system shows it, kept only when it is one: hidden (empty) and masked forms
/// (`alice at example dot com`, `a***@example.com`) are dropped, so nothing downstream can compare them.
pub fn visible_email(shown: Option<String>) -> Option<String> {
    shown
        .map(|e| e.trim().to_owned())
        .filter(|e| super::identity::looks_like_email(e) && !e.contains('*'))
}

/// Who an e-mail address is in a ticket system, as exactly as the system lets Ticketbound tell.
///
/// Jira's user search matches *prefixes* of names and addresses and may hide addresses: an account whose
/// address is hidden can never be taken for the person searched for, because `alice@corp.co` also finds
/// `alice@corp.com` and `alice@corp.co.evil`. Only an exact, visible address identifies someone; the exact
/// alternatives when addresses are hidden are an admin's mapping on the connection (`people`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersonLookup {
    /// The one active account whose visible address is exactly the one searched for.
    Found(Person),
    /// The search matched nobody.
    NotFound,
    /// The search matched accounts, but their addresses are hidden or masked: none of them can be taken as
    /// this person.
    Unverifiable,
}

impl PersonLookup {
    /// Picks the account with exactly `email` among what a (prefix-matching) search returned.
    pub fn among(candidates: Vec<Person>, email: &str) -> Self {
        let mut hidden = false;
        for person in candidates {
            if person.has_email(email) {
                return Self::Found(person);
            }
            hidden |= person.email.is_none();
        }
        if hidden {
            Self::Unverifiable
        } else {
            Self::NotFound
        }
    }
}

/// A ticket in `GET /v1/tickets` (DESIGN §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TicketSummary {
    pub key: String,
    pub summary: String,
    pub status: String,
    pub url: String,
}

impl From<&Ticket> for TicketSummary {
    fn from(t: &Ticket) -> Self {
        Self {
            key: t.key.clone(),
            summary: t.summary.clone(),
            status: t.status.clone(),
            url: t.url.clone(),
        }
    }
}

/// A ticket's state as the webhook handlers need it: whether bound grants must end, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketState {
    Open,
    Closed,
    /// Deleted (Jira: the issue is gone or no longer visible; Freshservice: deleted or spam).
    Deleted,
}

impl TicketState {
    /// The state of a ticket read back, `None` meaning the ticket system no longer has it.
    pub fn of(ticket: Option<&Ticket>) -> Self {
        match ticket {
            None => Self::Deleted,
            Some(t) if t.deleted => Self::Deleted,
            Some(t) if t.closed => Self::Closed,
            Some(_) => Self::Open,
        }
    }
}

/// What `verify` saw with the connection's credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The account the credentials act as (Jira: `/myself`; Freshservice: the API key's agent).
    pub account: Person,
    /// Jira: a sample of visible projects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<ProjectSummary>>,
    /// Jira Cloud: where the calls worked (the site for a classic token, the API gateway for a scoped one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiRoute>,
    /// Settings the kind learnt while verifying and keeps (Jira Cloud: the token type that worked, the site's
    /// cloud id): merged into the connection's [`ConnectionSettings::fields`].
    #[serde(skip)]
    pub learned: KindFields,
}

impl Verification {
    /// What a ticket system without API forms saw.
    pub fn of(account: Person, projects: Option<Vec<ProjectSummary>>) -> Self {
        Self {
            account,
            projects,
            api: None,
            learned: KindFields::new(),
        }
    }
}

/// What `GET /v1/tickets` asks of one page of the caller's open tickets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketQuery {
    /// Text to find in the key or summary, as the person typed it (the adapter escapes it for its query
    /// language); `None` lists every open ticket.
    pub text: Option<String>,
    /// The ticket system's own page token from an earlier page's [`TicketPage::next`]; `None` for the first page.
    pub page: Option<String>,
}

/// One page of open tickets, and the ticket system's token for the next one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketPage {
    pub items: Vec<TicketSummary>,
    /// `None` on the last page.
    pub next: Option<String>,
}

/// The longest `q` of a ticket search (Freshservice caps its whole filter query at 512 characters).
pub const MAX_TICKET_QUERY: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProjectSummary {
    pub key: String,
    pub name: String,
}

impl Serialize for Person {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("email", &self.email)?;
        map.serialize_entry("display_name", &self.display_name)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn webhook_health_is_unknown_then_ok_and_a_missed_closing_warns_for_seven_days() {
        let now = datetime!(2026-05-01 12:00 UTC);
        let mut activity = WebhookActivity::default();
        assert_eq!(activity.health(now), WebhookHealth::Unknown);
        activity.last_delivery_at = Some(now - time::Duration::hours(1));
        assert_eq!(activity.health(now), WebhookHealth::Ok);
        activity.last_missed_closing = Some(MissedClosing {
            at: now - time::Duration::days(6),
            ticket: "SEC-42".into(),
        });
        // Deliveries after the miss do not clear it: a filtered webhook misses only some closings.
        assert_eq!(activity.health(now), WebhookHealth::Warning);
        assert_eq!(
            activity.health(now + time::Duration::days(2)),
            WebhookHealth::Ok,
            "only time clears it"
        );
        activity.last_delivery_at = None;
        assert_eq!(
            activity.health(now + time::Duration::days(30)),
            WebhookHealth::Warning,
            "nothing has ever been delivered"
        );
    }

    #[test]
    fn secrets_round_trip_through_storage_and_never_print() {
        let secrets = ConnectionSecrets {
            credentials: Credentials::new(AuthMethod::named("api_token"), Secret::new("tok-123")),
            webhook_secrets: vec![Secret::new("wh-1"), Secret::new("wh-2")],
        };
        let json = secrets.to_storage_json();
        assert!(json.contains("tok-123"));
        assert_eq!(
            ConnectionSecrets::from_storage_json(&json).unwrap(),
            secrets
        );
        let debug = format!("{secrets:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("wh-1"),
            "{debug}"
        );
        let shown = serde_json::to_string(&secrets.credentials).unwrap();
        assert!(!shown.contains("tok-123"));
    }

    #[test]
    fn settings_written_before_kinds_were_plug_ins_load_and_write_back_the_same() {
        let stored = serde_json::json!({
            "id": "jira-main", "kind": "jira_cloud", "base_url": "https://acme.atlassian.net",
            "auth_method": "api_token", "email": "bot@acme.com", "closed_statuses": ["Won't Do"],
            "webhook_secrets_active": 1, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "token_type": "scoped",
            "detected_token_type": "scoped", "cloud_id": "abc"
        });
        let settings: ConnectionSettings = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(settings.kind, ConnectionKind::named("jira_cloud"));
        assert_eq!(settings.auth_method, AuthMethod::named("api_token"));
        assert_eq!(settings.fields["email"], "bot@acme.com");
        assert_eq!(settings.fields["cloud_id"], "abc");
        assert_eq!(serde_json::to_value(&settings).unwrap(), stored);
    }

    #[test]
    fn stored_names_are_short_and_plain() {
        for bad in ["", "Jira", "a b", "../x", &"x".repeat(41)] {
            assert!(
                serde_json::from_value::<ConnectionKind>(serde_json::json!(bad)).is_err(),
                "{bad:?}"
            );
        }
        let kind: ConnectionKind = serde_json::from_str("\"linear\"").unwrap();
        assert_eq!(kind.as_str(), "linear");
        assert_eq!(serde_json::to_string(&kind).unwrap(), "\"linear\"");
    }

    #[test]
    fn unreadable_stored_secrets_do_not_quote_the_value() {
        let err = ConnectionSecrets::from_storage_json("{\"credential\": \"hunter2\"").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn auth_failures_turn_into_failed_and_a_success_resets() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let s = AuthState::new().succeeded(now);
        let s1 = s.auth_failed("401");
        assert_eq!(s1.status, AuthStatus::NeedsReauthorization);
        assert_eq!(s1.last_verified_at, Some(now));
        let s3 = s1.auth_failed("401").auth_failed("401");
        assert_eq!(s3.status, AuthStatus::Failed);
        let back = s3.succeeded(now);
        assert_eq!(back.status, AuthStatus::Connected);
        assert_eq!(back.last_error, None);
        assert_eq!(back.consecutive_auth_failures, 0);
    }

    #[test]
    fn an_unreachable_system_keeps_the_status() {
        let s = AuthState::new().auth_failed("401").unreachable("timeout");
        assert_eq!(s.status, AuthStatus::NeedsReauthorization);
        assert_eq!(s.last_error.as_deref(), Some("timeout"));
    }

    #[test]
    fn any_active_webhook_secret_is_accepted() {
        let secrets = WebhookSecrets(vec![Secret::new("old"), Secret::new("new")]);
        assert!(secrets.accepts_shared_secret("old"));
        assert!(secrets.accepts_shared_secret("new"));
        assert!(!secrets.accepts_shared_secret("other"));
        assert!(!WebhookSecrets(vec![]).accepts_shared_secret(""));
    }

    #[test]
    fn hub_signatures_match_the_reference_vector() {
        let secrets = WebhookSecrets(vec![Secret::new("rotated"), Secret::new("shhh")]);
        let body = br#"{"webhookEvent":"jira:issue_created"}"#;
        let header = "sha256=3fabe2d04ab39e6c32cd69443906602514ec29b8c013897d29901059b6adfbce";
        assert!(secrets.accepts_hub_signature(header, body));
        assert!(!secrets.accepts_hub_signature(header, b"{}"));
        assert!(!secrets.accepts_hub_signature("sha1=00", body));
        assert!(!secrets.accepts_hub_signature("sha256=zz", body));
    }

    fn person(id: &str, email: Option<&str>) -> Person {
        Person {
            id: id.into(),
            email: visible_email(email.map(str::to_owned)),
            display_name: None,
        }
    }

    #[test]
    fn only_an_exact_visible_address_identifies_a_person() {
        let found = PersonLookup::among(
            vec![
                person("longer", Some("alice@corp.com")),
                person("alice", Some("Alice@Corp.co")),
            ],
            "alice@corp.co",
        );
        let PersonLookup::Found(alice) = found else {
            panic!("expected the exact match, got {found:?}");
        };
        assert_eq!(alice.id, "alice");
    }

    #[test]
    fn a_lone_hidden_address_is_unverifiable_not_a_match() {
        assert_eq!(
            PersonLookup::among(vec![person("evil", None)], "mallory@example.com"),
            PersonLookup::Unverifiable
        );
        assert_eq!(
            PersonLookup::among(
                vec![person("other", Some("alice@corp.com"))],
                "alice@corp.co"
            ),
            PersonLookup::NotFound
        );
        assert_eq!(PersonLookup::among(vec![], "a@b.c"), PersonLookup::NotFound);
    }

    #[test]
    fn masked_and_hidden_addresses_are_not_addresses() {
        assert_eq!(visible_email(Some("alice at example dot com".into())), None);
        assert_eq!(visible_email(Some("a***@example.com".into())), None);
        assert_eq!(visible_email(Some(String::new())), None);
        assert_eq!(
            visible_email(Some(" alice@example.com ".into())).as_deref(),
            Some("alice@example.com")
        );
    }

    #[test]
    fn closed_statuses_match_by_kind() {
        let fs = ClosedStatuses::Numbers(vec![4, 5]);
        assert!(fs.has_number(4) && fs.has_number(5) && !fs.has_number(2));
        let jira = ClosedStatuses::Names(vec!["Won't Do".into()]);
        assert!(jira.has_name("won't do"));
        assert!(!jira.has_name("Done"));
    }

    #[test]
    fn ticket_state_distinguishes_closed_and_deleted() {
        let t = Ticket {
            id: None,
            key: "1".into(),
            summary: String::new(),
            status: "Open".into(),
            closed: false,
            deleted: false,
            assignee: None,
            url: String::new(),
        };
        assert_eq!(TicketState::of(Some(&t)), TicketState::Open);
        assert_eq!(TicketState::of(None), TicketState::Deleted);
        let closed = Ticket {
            closed: true,
            ..t.clone()
        };
        assert_eq!(TicketState::of(Some(&closed)), TicketState::Closed);
        let spam = Ticket {
            closed: true,
            deleted: true,
            ..t
        };
        assert_eq!(TicketState::of(Some(&spam)), TicketState::Deleted);
    }
}
