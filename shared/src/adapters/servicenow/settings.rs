//! What ServiceNow means for a connection's settings: a web-service user's user name and password (Basic
//! auth), the instance URL, and closed statuses as numeric `state` values the operator adds to `active` being
//! false (none by default: state values differ per table and per instance).

use std::sync::Arc;

use super::ServiceNowClient;
use crate::adapters::ticket_http::{TicketHttp, basic, missing_setting};
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
use reqwest::header::HeaderValue;

/// ServiceNow (Table API, a web-service user).
pub struct ServiceNow;

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
                ),
                FieldDescription::secret("password", "Password", "Its password."),
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
        &["username", "password"]
    }

    fn new_credentials(&self, input: &KindFields) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let username = check_username(&text(input, "username").ok_or_else(|| {
            SettingsError::new(
                "missing_credentials",
                "`username` (the web-service user) is required for a servicenow connection",
            )
        })?)?;
        let password = required(self.kind(), "password", &secret(input, "password"))?;
        Ok(CheckedCredentials {
            credentials: Credentials::new(AuthMethod::PASSWORD, password),
            fields: fields_of([("username", Some(username))]),
        })
    }

    fn changed_credentials(
        &self,
        settings: &ConnectionSettings,
        current: Option<&Credentials>,
        input: &KindFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let username = match text(input, "username") {
            Some(u) => Some(check_username(&u)?),
            None => stored(settings, "username"),
        };
        let credentials = match given(&secret(input, "password")) {
            Some(password) => {
                check_credential("password", &password)?;
                Credentials::new(AuthMethod::PASSWORD, password)
            }
            None => keep_current(settings, current)?,
        };
        Ok(CheckedCredentials {
            credentials,
            fields: fields_of([("username", username)]),
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

    fn destination(&self, _fields: &DestinationFields<'_>) -> Result<TicketDestination, String> {
        Err("servicenow connections do not open tickets yet (audit tickets and the `ticket` provisioner)".into())
    }
}

impl TicketSystemModule for ServiceNow {
    /// Basic with the web-service user's name and password.
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<HeaderValue, TicketSystemError> {
        let credentials = &secrets.credentials;
        if credentials.method != AuthMethod::PASSWORD {
            return Err(missing_setting(settings, "password"));
        }
        basic(
            &stored(settings, "username").ok_or_else(|| missing_setting(settings, "username"))?,
            credentials.secret.expose(),
        )
    }

    fn client(
        &self,
        http: TicketHttp,
        settings: &ConnectionSettings,
        _secrets: &ConnectionSecrets,
        _options: &ClientOptions,
    ) -> Arc<dyn TicketSystem> {
        Arc::new(ServiceNowClient::new(
            http,
            settings.closed_statuses.clone(),
            stored(settings, "username"),
        ))
    }
}
