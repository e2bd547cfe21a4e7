//! What ServiceNow means for a connection's settings: one of three sign-ins — a web-service user's user name
//! and password (Basic auth), an OAuth application's client id and secret (the client-credentials grant at
//! `POST /oauth_token.do`, whose tokens act as the application's "OAuth Application User"), or an API key
//! (Washington DC and later, sent as is in `x-sn-apikey`, acting as the user its REST API key record names) —
//! the instance URL, and closed statuses as numeric `state` values the operator adds to `active` being false
//! (none by default: state values differ per table and per instance).

use std::sync::Arc;

use super::{INCIDENT, REQUESTED_ITEM, ServiceNowClient};
use crate::adapters::ticket_http::{TicketHttp, basic, missing_setting, sensitive};
use crate::adapters::ticket_systems::client_credentials::{ClientCredentials, TokenEndpoint};
use crate::adapters::ticket_systems::fields::{
    check_credential, check_username, fields_of, given, invalid_closed_statuses, keep_current,
    reject_foreign_fields, required, secret, stored, text,
};
use crate::adapters::ticket_systems::{ClientOptions, TicketSystemModule};
use crate::domain::connection::ConnectionSecrets;
use crate::domain::connection::{
    AuthMethod, ClosedStatuses, ConnectionKind, ConnectionSettings, Credentials, KindFields,
};
use crate::domain::ticket_writes::TicketDestination;
use crate::ports::TicketSystemError;
use crate::ports::{
    CheckedCredentials, ClosedStatusesDescription, DeliveryRules, DestinationFields,
    FieldDescription, HostForm, KindDescription, SettingsError, TicketSystem, TicketSystemKind,
    WebhookDescription, WebhookSource,
};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

/// ServiceNow (Table API, a web-service user, OAuth client credentials or an API key).
pub struct ServiceNow;

/// Signing in with an OAuth application's client credentials (`client_id` is a setting, the secret is the
/// connection's credential).
pub const CLIENT_SECRET: AuthMethod = AuthMethod::named("client_secret");

/// The header ServiceNow reads an API key from (plugin `com.glide.tokenbased_auth`, an inbound authentication
/// profile of type API key). The key is sent as is; no `Authorization` header goes with it.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-sn-apikey");

/// ServiceNow's token endpoint, `POST /oauth_token.do`. Its access tokens live 30 minutes unless the OAuth
/// application says otherwise, and the answer says how long (`expires_in`).
const TOKEN_ENDPOINT: TokenEndpoint = TokenEndpoint {
    path: &["oauth_token.do"],
    vendor: "ServiceNow",
    scope: None,
    max_lifetime: std::time::Duration::from_secs(24 * 3600),
};

/// The sign-in a connection body gives: the fields of one of the three ways, any of them.
struct SignIn {
    username: Option<String>,
    password: Option<crate::domain::secret::Secret>,
    client_id: Option<String>,
    client_secret: Option<crate::domain::secret::Secret>,
    api_key: Option<crate::domain::secret::Secret>,
}

impl SignIn {
    /// The given fields; a masked secret sent back counts as not given. Fields of two ways at once are refused.
    fn of(input: &KindFields) -> Result<Self, SettingsError> {
        let sign_in = Self {
            username: text(input, "username")
                .map(|u| check_username(&u))
                .transpose()?,
            password: given(&secret(input, "password")),
            client_id: text(input, "client_id")
                .map(|id| check_client_id(&id))
                .transpose()?,
            client_secret: given(&secret(input, "client_secret")),
            api_key: given(&secret(input, "api_key")),
        };
        let basic = sign_in.username.is_some() || sign_in.password.is_some();
        let oauth = sign_in.client_id.is_some() || sign_in.client_secret.is_some();
        let key = sign_in.api_key.is_some();
        if [basic, oauth, key].iter().filter(|way| **way).count() > 1 {
            return Err(SettingsError::new(
                "ambiguous_credentials",
                "give one way to sign in: `username` + `password`, `client_id` + `client_secret`, or `api_key`",
            ));
        }
        Ok(sign_in)
    }
}

/// An OAuth application's client id (ServiceNow's are 32 hex digits; any 1 to 200 printable characters pass).
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

/// ServiceNow's name in the API.
pub const SERVICENOW: ConnectionKind = ConnectionKind::named("servicenow");

/// The name the code and tests used when kinds were an enum.
#[allow(non_upper_case_globals)]
impl ConnectionKind {
    pub const ServiceNow: Self = SERVICENOW;
}

/// Where ServiceNow's deliveries arrive: `/webhooks/servicenow/{connection}`.
pub const WEBHOOK_SOURCE: WebhookSource = WebhookSource {
    path: "servicenow",
    name: "ServiceNow",
};

/// ServiceNow has no webhook subscription: an admin adds the Business Rule of docs/connections.md.
const STEPS: &[&str] = &[
    "In ServiceNow: System Properties → create `x_ticketbound.webhook_secret` (type password2) holding the connection's webhook secret.",
    "System Definition → Business Rules → New: table `task`, Advanced, When `after`, Update, Condition `current.active.changesTo(false) || current.state.changes()`.",
    "Script: the Business Rule of docs/connections.md (\"ServiceNow\"), with the URL `{url}`. It posts table, sys_id, number, state and active, signed in `X-Ticketbound-Signature`, asynchronously.",
    "Give the web-service user read access to `task` and `sys_user` (the `itil` role): Ticketbound re-reads the record before ending anything.",
];

impl TicketSystemKind for ServiceNow {
    fn kind(&self) -> ConnectionKind {
        SERVICENOW
    }

    fn describe(&self) -> KindDescription {
        KindDescription {
            kind: self.kind(),
            label: "ServiceNow",
            fields: vec![
                FieldDescription::text(
                    "domain",
                    "Instance",
                    "acme, acme.service-now.com, or a full https:// URL",
                ),
                FieldDescription::text(
                    "username",
                    "User name",
                    "A web-service user (Web service access only) with the itil role.",
                )
                .in_group("basic"),
                FieldDescription::secret("password", "Password", "Its password.")
                    .in_group("basic"),
                FieldDescription::text(
                    "client_id",
                    "OAuth client id",
                    "An OAuth API endpoint for external clients, client credentials enabled (glide.oauth.inbound.client.credential.grant_type.enabled), its OAuth Application User with the itil role.",
                )
                .in_group("oauth"),
                FieldDescription::secret("client_secret", "OAuth client secret", "Its secret.")
                    .in_group("oauth"),
                FieldDescription::secret(
                    "api_key",
                    "API key",
                    "A REST API key (Washington DC or later: plugin com.glide.tokenbased_auth, an inbound API key authentication profile, and a REST API access policy for the Table API), its user with the itil role.",
                )
                .in_group("api_key"),
            ],
            closed_statuses: ClosedStatusesDescription {
                help: "A ticket is closed once it is no longer active; add state numbers that also count as closed, e.g. 6 (Resolved incidents).",
                default: self.default_closed_statuses(),
            },
            webhook: WebhookDescription {
                path: "/webhooks/servicenow/{connection}",
                steps: STEPS,
            },
        }
    }

    fn webhook_source(&self) -> WebhookSource {
        WEBHOOK_SOURCE
    }

    fn deliveries(&self) -> &'static dyn DeliveryRules {
        &super::events::ServiceNowDeliveries
    }

    fn canonical_key(&self, key: &str) -> String {
        super::canonical_number(key)
    }

    fn host_form(&self) -> Option<HostForm> {
        Some(HostForm {
            field: "domain",
            suffix: ".service-now.com",
        })
    }

    fn base_url_fields(&self) -> &'static str {
        "`domain` (the instance, `acme.service-now.com`) or `base_url`"
    }

    fn credential_fields(&self) -> &'static [&'static str] {
        &[
            "username",
            "password",
            "client_id",
            "client_secret",
            "api_key",
        ]
    }

    fn new_credentials(&self, input: &KindFields) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let sign_in = SignIn::of(input)?;
        if let Some(api_key) = sign_in.api_key {
            check_credential("api_key", &api_key)?;
            return Ok(CheckedCredentials {
                credentials: Credentials::new(AuthMethod::API_KEY, api_key),
                fields: KindFields::new(),
            });
        }
        if sign_in.client_id.is_some() || sign_in.client_secret.is_some() {
            let client_id = sign_in.client_id.ok_or_else(|| {
                SettingsError::new("missing_credentials", "`client_secret` needs `client_id`")
            })?;
            let client_secret = required(self.kind(), "client_secret", &sign_in.client_secret)?;
            return Ok(CheckedCredentials {
                credentials: Credentials::new(CLIENT_SECRET, client_secret),
                fields: fields_of([("client_id", Some(client_id))]),
            });
        }
        let username = sign_in.username.ok_or_else(|| {
            SettingsError::new(
                "missing_credentials",
                "a servicenow connection needs `username` (the web-service user) and `password`, `client_id` and `client_secret`, or `api_key`",
            )
        })?;
        let password = required(self.kind(), "password", &sign_in.password)?;
        Ok(CheckedCredentials {
            credentials: Credentials::new(AuthMethod::PASSWORD, password),
            fields: fields_of([("username", Some(username))]),
        })
    }

    /// A change keeps what it does not give: a new password, client secret or API key alone rotates it, a new
    /// user name or client id alone renames it. Switching between the ways takes every field of the new one
    /// (an API key is one field, so giving it switches to it).
    fn changed_credentials(
        &self,
        settings: &ConnectionSettings,
        current: Option<&Credentials>,
        input: &KindFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let sign_in = SignIn::of(input)?;
        let current_method = settings.auth_method;
        let switch = |field: &str| {
            SettingsError::new(
                "missing_credentials",
                format!("to switch how the connection signs in, give `{field}` too"),
            )
        };
        let (credentials, fields) = if let Some(api_key) = sign_in.api_key {
            check_credential("api_key", &api_key)?;
            (
                Credentials::new(AuthMethod::API_KEY, api_key),
                KindFields::new(),
            )
        } else if sign_in.client_id.is_some() || sign_in.client_secret.is_some() {
            let oauth_now = current_method == CLIENT_SECRET;
            let client_id = match sign_in.client_id {
                Some(id) => id,
                None if oauth_now => {
                    stored(settings, "client_id").ok_or_else(|| switch("client_id"))?
                }
                None => return Err(switch("client_id")),
            };
            let credentials = match sign_in.client_secret {
                Some(client_secret) => {
                    check_credential("client_secret", &client_secret)?;
                    Credentials::new(CLIENT_SECRET, client_secret)
                }
                None if oauth_now => keep_current(settings, current)?,
                None => return Err(switch("client_secret")),
            };
            (credentials, fields_of([("client_id", Some(client_id))]))
        } else {
            let basic_now = current_method == AuthMethod::PASSWORD;
            let username = match sign_in.username {
                Some(u) => Some(u),
                None if basic_now => stored(settings, "username"),
                None if sign_in.password.is_some() => return Err(switch("username")),
                None => None,
            };
            let credentials = match sign_in.password {
                Some(password) => {
                    check_credential("password", &password)?;
                    Credentials::new(AuthMethod::PASSWORD, password)
                }
                None if basic_now || username.is_none() => keep_current(settings, current)?,
                None => return Err(switch("password")),
            };
            if credentials.method == CLIENT_SECRET {
                let client_id = stored(settings, "client_id");
                (credentials, fields_of([("client_id", client_id)]))
            } else if credentials.method == AuthMethod::API_KEY {
                (credentials, KindFields::new())
            } else {
                (credentials, fields_of([("username", username)]))
            }
        };
        Ok(CheckedCredentials {
            credentials,
            fields,
        })
    }

    fn closed_statuses(
        &self,
        values: &[serde_json::Value],
    ) -> Result<ClosedStatuses, SettingsError> {
        let numbers = values
            .iter()
            .map(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .filter(|n| *n <= 1_000_000)
                    .ok_or_else(|| {
                        invalid_closed_statuses(
                            "ServiceNow `closed_statuses` are `state` numbers such as 6 (Resolved incidents); inactive tickets are always closed",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClosedStatuses::Numbers(numbers))
    }

    fn default_closed_statuses(&self) -> ClosedStatuses {
        ClosedStatuses::Numbers(Vec::new())
    }

    /// `issue_type` is the table (`incident`, the default, or `sc_req_item` for a requested item), `project` an
    /// assignment group's `sys_id` (32 hex digits, optional), `priority` 1 (high) to 3 (low), written as the
    /// record's urgency and impact, from which ServiceNow computes its priority (optional). `group_id` does not
    /// apply: ServiceNow's groups are named by `sys_id`, not by number.
    fn destination(&self, fields: &DestinationFields<'_>) -> Result<TicketDestination, String> {
        if fields.group_id.is_some() {
            return Err(
                "`group_id` does not apply; a servicenow connection takes an assignment group's sys_id as `project`"
                    .into(),
            );
        }
        let table = fields.issue_type.map(str::trim).unwrap_or(INCIDENT);
        if table != INCIDENT && table != REQUESTED_ITEM {
            return Err(format!(
                "`issue_type` must be `{INCIDENT}` or `{REQUESTED_ITEM}` (a requested item)"
            ));
        }
        let group = fields
            .project
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(|g| {
                if g.len() == 32 && g.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(g.to_ascii_lowercase())
                } else {
                    Err("`project` must be an assignment group's sys_id (32 hex digits)".to_owned())
                }
            })
            .transpose()?;
        if fields.priority.is_some_and(|p| !(1..=3).contains(&p)) {
            return Err("`priority` must be 1 (high), 2 (medium) or 3 (low)".into());
        }
        Ok(TicketDestination {
            project: group,
            issue_type: Some(table.to_owned()),
            group_id: None,
            priority: fields.priority,
        })
    }
}

impl TicketSystemModule for ServiceNow {
    /// Basic with the web-service user's name and password; an API key as is (in [`API_KEY_HEADER`]). Client
    /// credentials sign in per client: the client asks `oauth_token.do` for an access token, so the
    /// connection's own header is a placeholder that never reaches the Table API.
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<HeaderValue, TicketSystemError> {
        let credentials = &secrets.credentials;
        match credentials.method {
            AuthMethod::PASSWORD => basic(
                &stored(settings, "username")
                    .ok_or_else(|| missing_setting(settings, "username"))?,
                credentials.secret.expose(),
            ),
            CLIENT_SECRET => sensitive("Bearer pending-client-credentials".to_owned()),
            AuthMethod::API_KEY => sensitive(credentials.secret.expose().to_owned()),
            _ => Err(missing_setting(
                settings,
                "password, client secret or API key",
            )),
        }
    }

    /// An API key travels in `x-sn-apikey`; the other ways in `Authorization`.
    fn credential_header(&self, secrets: &ConnectionSecrets) -> HeaderName {
        if secrets.credentials.method == AuthMethod::API_KEY {
            API_KEY_HEADER
        } else {
            AUTHORIZATION
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
        let oauth = (credentials.method == CLIENT_SECRET).then(|| {
            ClientCredentials::new(
                TOKEN_ENDPOINT,
                stored(settings, "client_id").unwrap_or_default(),
                credentials.secret.clone(),
            )
        });
        Arc::new(ServiceNowClient::new(
            http,
            settings.closed_statuses.clone(),
            stored(settings, "username"),
            oauth,
        ))
    }
}
