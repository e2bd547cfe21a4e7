//! The JSON shapes of the connection API (DESIGN §6): the body an admin sends ([`ConnectionBody`]) and a
//! connection as the API shows it ([`ConnectionView`]: settings with every secret masked, its authorization
//! status and webhook health). The use cases take and give the wire-free `service::ConnectionChanges` and
//! `service::ConnectionShown`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::domain::connection::{
    ApiRoute, AuthStatus, ClosedStatuses, ConnectionKind, KindFields, MissedClosing, Person,
    ProjectSummary, WebhookHealth,
};
use crate::domain::secret::{MASK, Secret};
use crate::domain::ticket_writes::AuditSettings;
use crate::service::{ConnectionChanges, ConnectionShown, Connections};

use super::error::ApiError;
use crate::service::ErrorKind;

/// The body of `POST /v1/connections` and `PATCH /v1/connections/{id}`: the members every connection has, and
/// the kind's own fields (its host-name field such as `site`, credentials, `email`, `token_type`, …) as its
/// plug-in declares them. A member no kind
/// of this build declares is refused (400), so a misspelt field is never silently ignored; one that another
/// kind declares is the plug-in's to refuse (422 `field_not_applicable`).
#[derive(Default, Deserialize)]
pub struct ConnectionBody {
    #[serde(default)]
    id: Option<String>,
    /// Looked up among the registered kinds by [`ConnectionBody::into_changes`].
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
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
    /// Every other member: the kind's own fields.
    #[serde(flatten)]
    kind_fields: KindFields,
}

/// The kind's fields by name only: some hold secrets.
impl std::fmt::Debug for ConnectionBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionBody")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("kind_fields", &self.kind_fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A body that is not the expected JSON: the 400 a serde error gets from `JsonBody`.
fn malformed(message: String) -> ApiError {
    ApiError::new(
        ErrorKind::BadRequest,
        "malformed_request",
        format!("the body is not the expected JSON: {message}"),
    )
}

impl ConnectionBody {
    /// The use case's input: `kind` looked up among the kinds of this build, and every other member a field
    /// that some kind declares, given as a string or `null` (400 `malformed_request` otherwise, as for any body
    /// that is not the expected JSON).
    pub fn into_changes(self, connections: &Connections) -> Result<ConnectionChanges, ApiError> {
        // Destructured, so a field added to the body and not handed on fails to compile.
        let ConnectionBody {
            id,
            kind,
            base_url,
            webhook_secret,
            add_webhook_secret,
            new_webhook_secret,
            retire_old_webhook_secrets,
            closed_statuses,
            audit,
            people,
            kind_fields,
        } = self;
        let kind: Option<ConnectionKind> = match kind {
            None => None,
            Some(name) => Some(connections.kind_named(&name).ok_or_else(|| {
                let names: Vec<String> = connections
                    .kind_names()
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect();
                malformed(format!(
                    "unknown kind `{name}`, expected one of {}",
                    names.join(", ")
                ))
            })?),
        };
        let declared = connections.kind_field_names();
        for (field, value) in &kind_fields {
            if !declared.contains(&field.as_str()) {
                return Err(malformed(format!("unknown field `{field}`")));
            }
            if !(value.is_string() || value.is_null()) {
                return Err(malformed(format!("`{field}` must be a string")));
            }
        }
        Ok(ConnectionChanges {
            id,
            kind,
            base_url,
            credentials: kind_fields,
            webhook_secret,
            add_webhook_secret,
            new_webhook_secret,
            retire_old_webhook_secrets,
            closed_statuses,
            audit,
            people,
        })
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
    /// The kind's own settings (`email`, `username`, Jira Cloud's `token_type`, `detected_token_type` and
    /// `cloud_id`), as stored.
    #[serde(flatten)]
    kind_fields: KindFields,
    /// The connection's credential under its field's name (the auth method's, `api_token`), masked.
    #[serde(flatten)]
    credential: BTreeMap<&'static str, &'static str>,
    webhook_secret: Shown,
    webhook_secrets_active: usize,
    closed_statuses: ClosedStatuses,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<AuditSettings>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    people: BTreeMap<String, String>,
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
        let (verified, account, projects, api) = match verification {
            Some(v) => (Some(v.verified), v.account, v.projects, v.api),
            None => (None, None, None, None),
        };
        // A stored member never hides the masked credential or a shared member of the same name.
        let mut kind_fields = s.fields;
        kind_fields.remove(s.auth_method.as_str());
        Self {
            credential: BTreeMap::from([(s.auth_method.as_str(), MASK)]),
            kind_fields,
            webhook_secret: generated_webhook_secret.map_or(Shown::Masked, Shown::Revealed),
            webhook_health: connection.webhook.health(at),
            id: s.id,
            kind: s.kind,
            base_url: s.base_url,
            webhook_secrets_active: s.webhook_secrets_active,
            closed_statuses: s.closed_statuses,
            audit: s.audit,
            people: s.people,
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
    fn a_body_and_the_changes_it_becomes_never_print_a_kind_s_secret() {
        let body: ConnectionBody = serde_json::from_str(
            r#"{"id": "lin", "kind": "linear", "api_key": "lin_api_topsecret", "client_secret": "cs-topsecret"}"#,
        )
        .unwrap();
        let shown = format!("{body:?}");
        assert!(
            shown.contains("api_key") && !shown.contains("topsecret"),
            "{shown}"
        );
        let changes = ConnectionChanges {
            credentials: body.kind_fields.clone(),
            ..ConnectionChanges::default()
        };
        let shown = format!("{changes:?}");
        assert!(
            shown.contains("client_secret") && !shown.contains("topsecret"),
            "{shown}"
        );
    }

    #[test]
    fn a_null_field_is_told_from_an_absent_one() {
        let off: ConnectionBody = serde_json::from_str(r#"{"audit": null}"#).unwrap();
        assert!(matches!(off.audit, Some(None)));
        let kept: ConnectionBody = serde_json::from_str("{}").unwrap();
        assert!(kept.audit.is_none());
        let detect: ConnectionBody = serde_json::from_str(r#"{"token_type": null}"#).unwrap();
        assert_eq!(
            detect.kind_fields.get("token_type"),
            Some(&serde_json::Value::Null),
            "a kind's field keeps its null for the plug-in"
        );
    }
}
