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

/// The ticket systems Ticketbound talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    JiraCloud,
    JiraDataCenter,
    Freshservice,
    #[serde(rename = "servicenow")]
    ServiceNow,
}

impl ConnectionKind {
    /// Every kind, in the order the portal offers them.
    pub const ALL: [Self; 4] = [
        Self::JiraCloud,
        Self::JiraDataCenter,
        Self::Freshservice,
        Self::ServiceNow,
    ];

    /// The kind spelled as [`ConnectionKind::as_str`] spells it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::JiraCloud => "jira_cloud",
            Self::JiraDataCenter => "jira_data_center",
            Self::Freshservice => "freshservice",
            Self::ServiceNow => "servicenow",
        }
    }
}

/// How a connection signs in to its ticket system; which credential fields exist follows from it, so a list of
/// connections can be shown (masked) without reading any secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Jira Cloud: `email` + `api_token`, HTTP Basic.
    ApiToken,
    /// Jira Data Center: `personal_access_token`, `Authorization: Bearer`.
    PersonalAccessToken,
    /// Jira Data Center: `username` + `password`, HTTP Basic.
    Password,
    /// Freshservice: `api_key` as the Basic user name, `X` as the password.
    ApiKey,
}

/// Which statuses count as closed (DESIGN §1 rule 9), on top of Jira's `done` category or Freshservice's
/// deleted/spam flags. Jira names statuses; Freshservice numbers them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClosedStatuses {
    Names(Vec<String>),
    Numbers(Vec<u64>),
}

/// Freshservice's Resolved (4) and Closed (5).
pub const FRESHSERVICE_DEFAULT_CLOSED: [u64; 2] = [4, 5];

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
    /// Jira Cloud: the account the API token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Jira Data Center with `password`: the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
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
    /// Jira Cloud: the kind of API token as the admin gave it (`classic` calls the site, `scoped` Atlassian's API
    /// gateway); `None` detects it (the last form that worked first, the other one on a 401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<TokenType>,
    /// Jira Cloud: the kind of token `verify` last found working (what detection tries first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_token_type: Option<TokenType>,
    /// Jira Cloud: the site's cloud id (from its public tenant info), which names it on the API gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_id: Option<String>,
}

/// A Jira Cloud API token's kind (Atlassian: "API token" and "API token with scopes"). Scoped tokens, and every
/// token of an Atlassian service account, work only through the API gateway
/// (`https://api.atlassian.com/ex/jira/{cloudId}`); on the site URL they get 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// Calls `https://<site>.atlassian.net/rest/...`.
    Classic,
    /// Calls `https://api.atlassian.com/ex/jira/{cloudId}/rest/...`.
    Scoped,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Scoped => "scoped",
        }
    }

    /// Where calls with this kind of token go.
    pub fn api(self) -> ApiRoute {
        match self {
            Self::Classic => ApiRoute::Site,
            Self::Scoped => ApiRoute::Gateway,
        }
    }

    /// The other kind (what detection tries after a 401).
    pub fn other(self) -> Self {
        match self {
            Self::Classic => Self::Scoped,
            Self::Scoped => Self::Classic,
        }
    }
}

/// Where a connection's REST calls went (`verify`'s `api`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRoute {
    /// The site's own URL (`base_url`).
    Site,
    /// Atlassian's API gateway for the site's cloud id.
    Gateway,
}

/// A plausible Atlassian cloud id: a UUID as tenant info gives it (letters, digits and `-`, at most 64), so it
/// can only ever be one path segment of the gateway URL.
pub fn is_cloud_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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

/// A connection's credentials. `Debug` and `Serialize` mask every value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Credentials {
    ApiToken { api_token: Secret },
    PersonalAccessToken { personal_access_token: Secret },
    Password { password: Secret },
    ApiKey { api_key: Secret },
}

impl Credentials {
    pub fn method(&self) -> AuthMethod {
        match self {
            Self::ApiToken { .. } => AuthMethod::ApiToken,
            Self::PersonalAccessToken { .. } => AuthMethod::PersonalAccessToken,
            Self::Password { .. } => AuthMethod::Password,
            Self::ApiKey { .. } => AuthMethod::ApiKey,
        }
    }

    /// The secret value itself (for building an `Authorization` header).
    pub fn secret(&self) -> &Secret {
        match self {
            Self::ApiToken { api_token: s }
            | Self::PersonalAccessToken {
                personal_access_token: s,
            }
            | Self::Password { password: s }
            | Self::ApiKey { api_key: s } => s,
        }
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
        let secret = Secret::new(stored.credential);
        let credentials = match stored.method {
            AuthMethod::ApiToken => Credentials::ApiToken { api_token: secret },
            AuthMethod::PersonalAccessToken => Credentials::PersonalAccessToken {
                personal_access_token: secret,
            },
            AuthMethod::Password => Credentials::Password { password: secret },
            AuthMethod::ApiKey => Credentials::ApiKey { api_key: secret },
        };
        Ok(Self {
            credentials,
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
    /// Jira Cloud: the site's cloud id, when the gateway was used (or looked up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_id: Option<String>,
}

impl Verification {
    /// What a ticket system without API forms saw.
    pub fn of(account: Person, projects: Option<Vec<ProjectSummary>>) -> Self {
        Self {
            account,
            projects,
            api: None,
            cloud_id: None,
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
            credentials: Credentials::ApiToken {
                api_token: Secret::new("tok-123"),
            },
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
        let fs = ClosedStatuses::Numbers(FRESHSERVICE_DEFAULT_CLOSED.to_vec());
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
