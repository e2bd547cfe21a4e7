//! The request and response shapes of the connection API (DESIGN §6): what an admin sends, and a connection as
//! the API shows it (every secret masked).

use super::*;

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
    /// Jira Cloud: `classic` (the site's REST API) or `scoped` (an API token with scopes, or a service account's
    /// token: Atlassian's API gateway); absent on create, or `null` on PATCH, detects it.
    #[serde(default, deserialize_with = "writes::present")]
    pub token_type: Option<Option<TokenType>>,
}

impl ConnectionInput {
    /// The credential fields, for the ticket system to check.
    pub(super) fn credential_fields(&self) -> CredentialFields {
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
pub(super) enum Shown {
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
    /// Jira Cloud: the token type the admin gave; absent while it is detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<TokenType>,
    /// Jira Cloud: the token type `verify` last found working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_token_type: Option<TokenType>,
    /// Jira Cloud: the site's cloud id, once known (it names the site on the API gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_id: Option<String>,
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
    /// `verify` only (Jira Cloud): where the credentials worked, `site` or `gateway`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiRoute>,
}

impl ConnectionView {
    pub(super) fn of(connection: &Connection, now: OffsetDateTime) -> Self {
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
            token_type: s.token_type,
            detected_token_type: s.detected_token_type,
            cloud_id: s.cloud_id.clone(),
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
            api: None,
        }
    }

    pub(super) fn revealing(mut self, secret: Option<Secret>) -> Self {
        if let Some(secret) = secret {
            self.webhook_secret = Shown::Revealed(secret);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_webhook_secrets_are_revealed_only_when_asked() {
        let masked = serde_json::to_value(Shown::Masked).unwrap();
        assert_eq!(masked, MASK);
        let shown = serde_json::to_value(Shown::Revealed(Secret::new("abc"))).unwrap();
        assert_eq!(shown, "abc");
    }
}
