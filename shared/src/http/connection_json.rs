//! The JSON shapes of the connection API (DESIGN §6): the body an admin sends ([`ConnectionBody`]) and a
//! connection as the API shows it ([`ConnectionView`]: settings with every secret masked, its authorization
//! status and webhook health). The use cases take and give the wire-free `service::ConnectionChanges` and
//! `service::ConnectionShown`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::domain::connection::{
    ApiRoute, AuthMethod, AuthStatus, ClosedStatuses, ConnectionKind, MissedClosing, Person,
    ProjectSummary, TokenType, WebhookHealth,
};
use crate::domain::secret::{MASK, Secret};
use crate::domain::ticket_writes::AuditSettings;
use crate::ports::CredentialFields;
use crate::service::{ConnectionChanges, ConnectionShown};

/// The body of `POST /v1/connections` and `PATCH /v1/connections/{id}`. Unknown fields are refused (400), so a
/// misspelt field is never silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    kind: Option<ConnectionKind>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    api_token: Option<Secret>,
    #[serde(default)]
    personal_access_token: Option<Secret>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    api_key: Option<Secret>,
    #[serde(default)]
    webhook_secret: Option<Secret>,
    #[serde(default)]
    add_webhook_secret: Option<Secret>,
    #[serde(default)]
    new_webhook_secret: bool,
    #[serde(default)]
    retire_old_webhook_secrets: bool,
    #[serde(default)]
    closed_statuses: Option<Vec<serde_json::Value>>,
    /// `null` turns audit tickets off; absent keeps them.
    #[serde(default, deserialize_with = "present")]
    audit: Option<Option<AuditSettings>>,
    /// Merged on PATCH: a `null` value removes that person.
    #[serde(default)]
    people: Option<BTreeMap<String, Option<String>>>,
    /// `null` on PATCH (or absent on create) detects the token type.
    #[serde(default, deserialize_with = "present")]
    token_type: Option<Option<TokenType>>,
}

impl From<ConnectionBody> for ConnectionChanges {
    fn from(body: ConnectionBody) -> Self {
        // Destructured, so a field added to the body and not handed on fails to compile.
        let ConnectionBody {
            id,
            kind,
            base_url,
            site,
            domain,
            email,
            api_token,
            personal_access_token,
            username,
            password,
            api_key,
            webhook_secret,
            add_webhook_secret,
            new_webhook_secret,
            retire_old_webhook_secrets,
            closed_statuses,
            audit,
            people,
            token_type,
        } = body;
        Self {
            id,
            kind,
            base_url,
            site,
            domain,
            credentials: CredentialFields {
                email,
                api_token,
                personal_access_token,
                username,
                password,
                api_key,
            },
            webhook_secret,
            add_webhook_secret,
            new_webhook_secret,
            retire_old_webhook_secrets,
            closed_statuses,
            audit,
            people,
            token_type,
        }
    }
}

/// `Some(value)` for a field that is present, `null` included (`Some(None)`): PATCH tells "turn off" from
/// "leave alone".
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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
    id: String,
    kind: ConnectionKind,
    base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_token: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    personal_access_token: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<&'static str>,
    webhook_secret: Shown,
    webhook_secrets_active: usize,
    closed_statuses: ClosedStatuses,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<AuditSettings>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    people: BTreeMap<String, String>,
    /// Jira Cloud: the token type the admin gave; absent while it is detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<TokenType>,
    /// Jira Cloud: the token type `verify` last found working.
    #[serde(skip_serializing_if = "Option::is_none")]
    detected_token_type: Option<TokenType>,
    /// Jira Cloud: the site's cloud id, once known (it names the site on the API gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_id: Option<String>,
    status: AuthStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    last_verified_at: Option<OffsetDateTime>,
    last_error: Option<String>,
    /// When an authentic webhook delivery last arrived (recorded at most once a minute per container).
    #[serde(with = "time::serde::rfc3339::option")]
    last_delivery_at: Option<OffsetDateTime>,
    /// `ok`, `warning` (reconciliation found a closing no delivery announced, within the last 7 days) or
    /// `unknown` (no delivery yet).
    webhook_health: WebhookHealth,
    /// The last closing reconciliation found without a delivery: `{"at": "...", "ticket": "SEC-42"}`.
    last_missed_closing: Option<MissedClosing>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    /// `verify` only: whether the credentials worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    /// `verify` only: the account the credentials act as.
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<Person>,
    /// `verify` only (Jira): a sample of the projects the credentials see.
    #[serde(skip_serializing_if = "Option::is_none")]
    projects: Option<Vec<ProjectSummary>>,
    /// `verify` only (Jira Cloud): where the credentials worked, `site` or `gateway`.
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<ApiRoute>,
}

impl From<ConnectionShown> for ConnectionView {
    fn from(shown: ConnectionShown) -> Self {
        let ConnectionShown {
            connection,
            at,
            generated_webhook_secret,
            verification,
        } = shown;
        let s = connection.settings;
        let masked = |method: AuthMethod| (s.auth_method == method).then_some(MASK);
        let (verified, account, projects, api) = match verification {
            Some(v) => (Some(v.verified), v.account, v.projects, v.api),
            None => (None, None, None, None),
        };
        Self {
            api_token: masked(AuthMethod::ApiToken),
            personal_access_token: masked(AuthMethod::PersonalAccessToken),
            password: masked(AuthMethod::Password),
            api_key: masked(AuthMethod::ApiKey),
            webhook_secret: generated_webhook_secret.map_or(Shown::Masked, Shown::Revealed),
            webhook_health: connection.webhook.health(at),
            id: s.id,
            kind: s.kind,
            base_url: s.base_url,
            email: s.email,
            username: s.username,
            webhook_secrets_active: s.webhook_secrets_active,
            closed_statuses: s.closed_statuses,
            audit: s.audit,
            people: s.people,
            token_type: s.token_type,
            detected_token_type: s.detected_token_type,
            cloud_id: s.cloud_id,
            status: connection.auth.status,
            last_verified_at: connection.auth.last_verified_at,
            last_error: connection.auth.last_error,
            last_delivery_at: connection.webhook.last_delivery_at,
            last_missed_closing: connection.webhook.last_missed_closing,
            created_at: s.created_at,
            updated_at: s.updated_at,
            verified,
            account,
            projects,
            api,
        }
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

    #[test]
    fn a_null_field_is_told_from_an_absent_one() {
        let off: ConnectionBody = serde_json::from_str(r#"{"audit": null}"#).unwrap();
        assert!(matches!(off.audit, Some(None)));
        let kept: ConnectionBody = serde_json::from_str("{}").unwrap();
        assert!(kept.audit.is_none());
        let detect: ConnectionBody = serde_json::from_str(r#"{"token_type": null}"#).unwrap();
        assert!(matches!(detect.token_type, Some(None)));
    }
}
