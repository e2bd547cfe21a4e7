//! What Linear means for a connection's settings: one API for every workspace (`https://api.linear.app`), a
//! personal API key of a service user or an OAuth application's client credentials, closed statuses as workflow
//! state names the operator adds to Linear's own closed state types, and Linear's webhook registration.

use std::sync::Arc;

use super::LinearClient;
use super::auth::{CLIENT_SECRET, SignIn};
use crate::adapters::ticket_http::{TicketHttp, missing_setting, sensitive};
use crate::adapters::ticket_systems::client_credentials::ClientCredentials;
use crate::adapters::ticket_systems::fields::{
    check_credential, fields_of, given, invalid_closed_statuses, keep_current,
    reject_foreign_fields, required, secret, stored, text,
};
use crate::adapters::ticket_systems::{ClientOptions, TicketSystemModule};
use crate::domain::connection::{
    AuthMethod, ClosedStatuses, ConnectionKind, ConnectionSecrets, ConnectionSettings, Credentials,
    KindFields,
};
use crate::domain::ticket_writes::TicketDestination;
use crate::ports::{
    CheckedCredentials, ClosedStatusesDescription, DeliveryRules, DestinationFields,
    FieldDescription, HostForm, KindDescription, SettingsError, TicketSystem, TicketSystemError,
    TicketSystemKind, WebhookDescription, WebhookSource,
};
use reqwest::header::HeaderValue;

/// Linear's name in the API.
pub const LINEAR: ConnectionKind = ConnectionKind::named("linear");

/// Linear's one API, for every workspace.
pub const LINEAR_API: &str = "https://api.linear.app";

/// Linear (GraphQL, an API key or OAuth client credentials).
pub struct Linear;

/// Where Linear's deliveries arrive: `/webhooks/linear/{connection}`.
pub const WEBHOOK_SOURCE: WebhookSource = WebhookSource {
    path: "linear",
    name: "Linear",
};

/// Linear's webhook registration: it signs every delivery with the webhook's signing secret.
const STEPS: &[&str] = &[
    "In Linear (a workspace admin): Settings → API → Webhooks → New webhook.",
    "URL: `{url}`",
    "Data change events: Issues. Choose the teams whose issues people bind grants to, or all public teams.",
    "Copy the webhook's signing secret and set it as this connection's webhook secret (PATCH `webhook_secret`), so Ticketbound checks `Linear-Signature`. Through the API instead: `webhookCreate` with `secret` set to the connection's webhook secret.",
];

/// How a connection signs in, read from the given fields: exactly one of an API key, or a client id and secret.
fn sign_in_of(input: &KindFields) -> Result<Option<SignIn>, SettingsError> {
    let api_key = secret(input, "api_key");
    let client_id = text(input, "client_id");
    let client_secret = secret(input, "client_secret");
    match (api_key, client_id, client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(SettingsError::new(
            "ambiguous_credentials",
            "give either `api_key` or `client_id` + `client_secret`, not both",
        )),
        (Some(key), None, None) => Ok(Some(SignIn::ApiKey(key))),
        (None, Some(id), Some(secret)) => Ok(Some(SignIn::ClientCredentials {
            client_id: check_client_id(&id)?,
            client_secret: secret,
        })),
        (None, Some(id), None) => Ok(Some(SignIn::ClientId(check_client_id(&id)?))),
        (None, None, Some(secret)) => Ok(Some(SignIn::ClientSecret(secret))),
        (None, None, None) => Ok(None),
    }
}

/// An OAuth application's client id: 1 to 200 printable characters.
fn check_client_id(id: &str) -> Result<String, SettingsError> {
    let id = id.trim();
    if id.is_empty() || id.len() > 200 || id.chars().any(|c| c.is_control() || c == ' ') {
        return Err(SettingsError::new(
            "invalid_credentials",
            "`client_id` must be the OAuth application's client id (1 to 200 characters, no spaces)",
        ));
    }
    Ok(id.to_owned())
}

impl TicketSystemKind for Linear {
    fn kind(&self) -> ConnectionKind {
        LINEAR
    }

    fn describe(&self) -> KindDescription {
        KindDescription {
            kind: self.kind(),
            label: "Linear",
            // The address comes first, as in every kind's form; Linear's is the same for everybody.
            fields: vec![
                FieldDescription {
                    default: Some(LINEAR_API),
                    ..FieldDescription::text(
                        "base_url",
                        "API URL",
                        "Leave empty for Linear's API, https://api.linear.app.",
                    )
                    .optional()
                },
                FieldDescription::secret(
                    "api_key",
                    "API key",
                    "A personal API key of a service user (Settings → Security & access → Personal API keys).",
                )
                .in_group("api_key"),
                FieldDescription::text(
                    "client_id",
                    "OAuth client id",
                    "An OAuth application with client credentials enabled (actor: app).",
                )
                .in_group("oauth"),
                FieldDescription::secret("client_secret", "OAuth client secret", "Its secret.")
                    .in_group("oauth"),
            ],
            closed_statuses: ClosedStatusesDescription {
                help: "Completed, canceled, duplicate, trashed and archived issues are always closed; add workflow state names that also count, e.g. In Review.",
                default: self.default_closed_statuses(),
            },
            webhook: WebhookDescription {
                path: "/webhooks/linear/{connection}",
                steps: STEPS,
            },
        }
    }

    fn webhook_source(&self) -> WebhookSource {
        WEBHOOK_SOURCE
    }

    fn deliveries(&self) -> &'static dyn DeliveryRules {
        &super::events::LinearDeliveries
    }

    fn canonical_key(&self, key: &str) -> String {
        super::canonical_identifier(key)
    }

    fn host_form(&self) -> Option<HostForm> {
        None
    }

    fn base_url_fields(&self) -> &'static str {
        "`base_url`"
    }

    fn default_base_url(&self) -> Option<&'static str> {
        Some(LINEAR_API)
    }

    fn credential_fields(&self) -> &'static [&'static str] {
        &["api_key", "client_id", "client_secret"]
    }

    fn new_credentials(&self, input: &KindFields) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        match sign_in_of(input)? {
            Some(SignIn::ApiKey(key)) => {
                let key = required(self.kind(), "api_key", &Some(key))?;
                Ok(CheckedCredentials {
                    credentials: Credentials::new(AuthMethod::API_KEY, key),
                    fields: KindFields::new(),
                })
            }
            Some(SignIn::ClientCredentials {
                client_id,
                client_secret,
            }) => {
                let client_secret = required(self.kind(), "client_secret", &Some(client_secret))?;
                Ok(CheckedCredentials {
                    credentials: Credentials::new(CLIENT_SECRET, client_secret),
                    fields: fields_of([("client_id", Some(client_id))]),
                })
            }
            _ => Err(SettingsError::new(
                "missing_credentials",
                "a linear connection needs `api_key`, or `client_id` and `client_secret`",
            )),
        }
    }

    fn changed_credentials(
        &self,
        settings: &ConnectionSettings,
        current: Option<&Credentials>,
        input: &KindFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        // A masked secret sent back means "keep": only the values actually given count.
        let mut given_fields = input.clone();
        for field in ["api_key", "client_secret"] {
            if secret(input, field).is_some_and(|s| given(&Some(s)).is_none()) {
                given_fields.remove(field);
            }
        }
        let kept = || keep_current(settings, current);
        let (credentials, client_id) = match sign_in_of(&given_fields)? {
            Some(SignIn::ApiKey(key)) => {
                check_credential("api_key", &key)?;
                (Credentials::new(AuthMethod::API_KEY, key), None)
            }
            Some(SignIn::ClientCredentials {
                client_id,
                client_secret,
            }) => {
                check_credential("client_secret", &client_secret)?;
                (
                    Credentials::new(CLIENT_SECRET, client_secret),
                    Some(client_id),
                )
            }
            Some(SignIn::ClientSecret(client_secret)) => {
                check_credential("client_secret", &client_secret)?;
                let client_id = stored(settings, "client_id").ok_or_else(|| {
                    SettingsError::new(
                        "missing_credentials",
                        "`client_secret` needs `client_id` on a connection that used an API key",
                    )
                })?;
                (
                    Credentials::new(CLIENT_SECRET, client_secret),
                    Some(client_id),
                )
            }
            Some(SignIn::ClientId(client_id)) => {
                let current = kept()?;
                if current.method() != CLIENT_SECRET {
                    return Err(SettingsError::new(
                        "missing_credentials",
                        "to switch to OAuth client credentials, give `client_id` and `client_secret`",
                    ));
                }
                (current, Some(client_id))
            }
            None => {
                let current = kept()?;
                let client_id = stored(settings, "client_id");
                (current, client_id)
            }
        };
        let client_id = client_id.filter(|_| credentials.method() == CLIENT_SECRET);
        Ok(CheckedCredentials {
            credentials,
            fields: fields_of([("client_id", client_id)]),
        })
    }

    fn closed_statuses(
        &self,
        values: &[serde_json::Value],
    ) -> Result<ClosedStatuses, SettingsError> {
        let names = values
            .iter()
            .map(|v| match v.as_str().map(str::trim) {
                Some(name) if !name.is_empty() && name.len() <= 100 => Ok(name.to_owned()),
                _ => Err(invalid_closed_statuses(
                    "Linear `closed_statuses` are workflow state names such as \"In Review\" (1 to 100 characters each)",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClosedStatuses::Names(names))
    }

    fn default_closed_statuses(&self) -> ClosedStatuses {
        ClosedStatuses::Names(Vec::new())
    }

    /// A team key (`project`, required) and a priority 0 (none) to 4 (low), default 0.
    fn destination(&self, fields: &DestinationFields<'_>) -> Result<TicketDestination, String> {
        if fields.issue_type.is_some() || fields.group_id.is_some() {
            return Err(
                "`issue_type` and `group_id` do not apply; a linear connection takes `project` (a team key) and `priority`"
                    .into(),
            );
        }
        let team = fields.project.map(str::trim).unwrap_or_default();
        let valid_team = (1..=20).contains(&team.len())
            && team.starts_with(|c: char| c.is_ascii_uppercase())
            && team
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid_team {
            return Err(
                "`project` must be a Linear team key such as ENG (upper-case letters, digits, `_`)"
                    .into(),
            );
        }
        let priority = fields.priority.unwrap_or(0);
        if priority > 4 {
            return Err(
                "`priority` must be 0 (none), 1 (urgent), 2 (high), 3 (medium) or 4 (low)".into(),
            );
        }
        Ok(TicketDestination {
            project: Some(team.to_owned()),
            priority: Some(priority),
            ..TicketDestination::default()
        })
    }
}

impl TicketSystemModule for Linear {
    /// An API key is sent as is (Linear takes no `Bearer` for it). Client credentials sign in per client: the
    /// client asks Linear's token endpoint for an access token, so the connection's own header is a placeholder
    /// that never reaches the GraphQL API.
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<HeaderValue, TicketSystemError> {
        let credentials = &secrets.credentials;
        match credentials.method() {
            AuthMethod::API_KEY => sensitive(credentials.secret().expose().to_owned()),
            CLIENT_SECRET => sensitive("Bearer pending-client-credentials".to_owned()),
            _ => Err(missing_setting(settings, "API key or client secret")),
        }
    }

    fn client(
        &self,
        http: TicketHttp,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
        _options: &ClientOptions,
    ) -> Arc<dyn TicketSystem> {
        let credentials = &secrets.credentials;
        let oauth = (credentials.method() == CLIENT_SECRET).then(|| {
            ClientCredentials::new(
                super::auth::TOKEN_ENDPOINT,
                stored(settings, "client_id").unwrap_or_default(),
                credentials.secret().clone(),
            )
        });
        Arc::new(LinearClient::new(
            http,
            settings.closed_statuses.clone(),
            oauth,
        ))
    }
}
