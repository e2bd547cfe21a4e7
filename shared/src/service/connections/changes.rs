//! What the admin use cases take and give, free of any wire format: the changes an admin asks for
//! ([`ConnectionChanges`]) and a connection with what the answer may add to it ([`ConnectionShown`]). The JSON
//! shapes of DESIGN §6, and the masking of every secret, are the HTTP layer's (`http/connections.rs`).

use super::*;

/// The fields an admin gives to create or change a connection. Which apply depends on the kind (DESIGN §6); a
/// field that does not apply is refused rather than ignored. A secret given as `"********"` means "keep the
/// current one". `None` is "not given". `Debug` names the kind's fields but never prints their values (some are
/// secrets).
#[derive(Clone, Default)]
pub struct ConnectionChanges {
    /// Required on create; on PATCH, when given, it must equal the id in the path.
    pub id: Option<String>,
    /// Required on create; it cannot change.
    pub kind: Option<ConnectionKind>,
    pub base_url: Option<String>,
    /// The kind's own fields as given: its host-name field in place of `base_url` (Jira Cloud's `site`,
    /// Freshservice's `domain`), its credentials and settings such as `email`, for its plug-in to read and check
    /// (`TicketSystemKind`).
    pub credentials: crate::domain::connection::KindFields,
    /// Replaces every active webhook secret (create: generated when absent).
    pub webhook_secret: Option<Secret>,
    /// PATCH: adds a webhook secret, keeping the others active (the start of a rotation).
    pub add_webhook_secret: Option<Secret>,
    /// PATCH: adds a generated webhook secret, shown once in the answer.
    pub new_webhook_secret: bool,
    /// PATCH: keeps only the most recently added webhook secret (the end of a rotation).
    pub retire_old_webhook_secrets: bool,
    /// Jira: status names; Freshservice: status numbers (default `[4, 5]`).
    pub closed_statuses: Option<Vec<serde_json::Value>>,
    /// Audit tickets (DESIGN §8): `Some(None)` turns them off, `None` keeps them.
    pub audit: Option<Option<AuditSettings>>,
    /// People mapped to their account in the ticket system (e-mail → account id), for requesters whose address
    /// the ticket system hides. On PATCH the entries are merged: a `None` value removes that person.
    pub people: Option<BTreeMap<String, Option<String>>>,
}

impl std::fmt::Debug for ConnectionChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionChanges")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("webhook_secret", &self.webhook_secret)
            .field("add_webhook_secret", &self.add_webhook_secret)
            .field("new_webhook_secret", &self.new_webhook_secret)
            .field(
                "retire_old_webhook_secrets",
                &self.retire_old_webhook_secrets,
            )
            .field("closed_statuses", &self.closed_statuses)
            .field("audit", &self.audit)
            .field("people", &self.people)
            .finish()
    }
}

/// A connection as an admin use case answers it: the stored connection, the moment its webhook health is judged
/// at, a webhook secret Ticketbound generated in this call (shown once, then never again), and what `verify`
/// found.
#[derive(Clone, Debug)]
pub struct ConnectionShown {
    pub connection: Connection,
    pub at: OffsetDateTime,
    pub generated_webhook_secret: Option<Secret>,
    pub verification: Option<Verification>,
}

impl ConnectionShown {
    pub(super) fn of(connection: Connection, at: OffsetDateTime) -> Self {
        Self {
            connection,
            at,
            generated_webhook_secret: None,
            verification: None,
        }
    }

    pub(super) fn revealing(mut self, secret: Option<Secret>) -> Self {
        self.generated_webhook_secret = secret;
        self
    }
}

/// What `POST /v1/connections/{id}/verify` found.
#[derive(Clone, Debug)]
pub struct Verification {
    /// Whether the credentials worked (refused credentials are an answer, not an error).
    pub verified: bool,
    /// The account the credentials act as.
    pub account: Option<Person>,
    /// Jira: a sample of the projects the credentials see.
    pub projects: Option<Vec<ProjectSummary>>,
    /// Where the credentials worked, for a kind that reaches its site two ways (Jira Cloud: the site or
    /// Atlassian's API gateway).
    pub api: Option<ApiRoute>,
}
