//! What Freshservice means for a connection's settings (DESIGN §6): an API key, closed statuses as status
//! numbers (default Resolved 4 and Closed 5), tickets to an optional group with a priority 1–4.

use std::sync::Arc;

use super::FreshserviceClient;
use crate::adapters::ticket_http::{TicketHttp, basic, missing_setting};
use crate::adapters::ticket_systems::fields::{
    check_credential, given, invalid_closed_statuses, keep_current, reject_foreign_fields,
    required, secret,
};
use crate::adapters::ticket_systems::{ClientOptions, TicketSystemModule};
use crate::domain::connection::ConnectionSecrets;
use crate::domain::connection::{
    AuthMethod, ClosedStatuses, ConnectionKind, ConnectionSettings, Credentials, KindFields,
};
use crate::domain::ticket_writes::{DEFAULT_PRIORITY, TicketDestination};
use crate::ports::TicketSystemError;
use crate::ports::{
    CheckedCredentials, ClosedStatusesDescription, DeliveryRules, DestinationFields,
    FieldDescription, HostForm, KindDescription, SettingsError, TicketSystem, TicketSystemKind,
    WebhookDescription, WebhookSource,
};
use reqwest::header::HeaderValue;

/// Freshservice's name in the API.
pub const FRESHSERVICE: ConnectionKind = ConnectionKind::named("freshservice");

/// The name the code and tests used when kinds were an enum.
#[allow(non_upper_case_globals)]
impl ConnectionKind {
    pub const Freshservice: Self = FRESHSERVICE;
}

/// Freshservice's Resolved (4) and Closed (5).
pub const FRESHSERVICE_DEFAULT_CLOSED: [u64; 2] = [4, 5];

/// Freshservice's webhook registration (the README's steps): it does not sign, so the secret travels in a
/// header and Ticketbound re-reads the ticket before ending anything.
const STEPS: &[&str] = &[
    "Admin → Automation & Productivity → Workflow Automator → new Ticket workflow, event Ticket is updated (status changed) and, if you like, Ticket is deleted.",
    "Action Trigger Webhook: request type POST, callback URL `{url}`, encoding JSON.",
    "Custom header `X-Ticketbound-Secret` with the webhook secret (or a Basic Auth credential whose password is the secret).",
    "Content Advanced, exactly this body: `{\"event\": \"ticket_updated\", \"ticket_id\": \"{{ticket.id_numeric}}\", \"ticket_display_id\": \"{{ticket.id}}\", \"status\": \"{{ticket.status}}\"}`",
];

/// Freshservice (API v2, an API key).
pub struct Freshservice;

/// Where Freshservice's deliveries arrive: `/webhooks/freshservice/{connection}`.
pub const WEBHOOK_SOURCE: WebhookSource = WebhookSource {
    path: "freshservice",
    name: "Freshservice",
};

impl TicketSystemKind for Freshservice {
    fn kind(&self) -> ConnectionKind {
        FRESHSERVICE
    }

    fn describe(&self) -> KindDescription {
        KindDescription {
            kind: self.kind(),
            label: "Freshservice",
            fields: vec![
                FieldDescription::text(
                    "domain",
                    "Domain",
                    "acme.freshservice.com, or a full https:// URL",
                ),
                FieldDescription::secret(
                    "api_key",
                    "API key",
                    "The API key of an agent that can read (and, for audit tickets, write) tickets.",
                ),
            ],
            closed_statuses: ClosedStatusesDescription {
                help: "Status numbers that count as closed, e.g. 4 (Resolved) and 5 (Closed); deleted and spam tickets always do.",
                default: self.default_closed_statuses(),
            },
            webhook: WebhookDescription {
                path: "/webhooks/freshservice/{connection}",
                steps: STEPS,
            },
        }
    }

    fn webhook_source(&self) -> WebhookSource {
        WEBHOOK_SOURCE
    }

    fn deliveries(&self) -> &'static dyn DeliveryRules {
        &super::events::FreshserviceDeliveries
    }

    fn canonical_key(&self, key: &str) -> String {
        super::canonical_ticket_id(key)
    }

    fn host_form(&self) -> Option<HostForm> {
        Some(HostForm {
            field: "domain",
            suffix: ".freshservice.com",
        })
    }

    fn base_url_fields(&self) -> &'static str {
        "`domain` (or `base_url`)"
    }

    fn credential_fields(&self) -> &'static [&'static str] {
        &["api_key"]
    }

    fn new_credentials(&self, input: &KindFields) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let api_key = required(self.kind(), "api_key", &secret(input, "api_key"))?;
        Ok(CheckedCredentials {
            credentials: Credentials::new(AuthMethod::API_KEY, api_key),
            fields: KindFields::new(),
        })
    }

    fn changed_credentials(
        &self,
        settings: &ConnectionSettings,
        current: Option<&Credentials>,
        input: &KindFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let credentials = match given(&secret(input, "api_key")) {
            Some(api_key) => {
                check_credential("api_key", &api_key)?;
                Credentials::new(AuthMethod::API_KEY, api_key)
            }
            None => keep_current(settings, current)?,
        };
        Ok(CheckedCredentials {
            credentials,
            fields: settings.fields.clone(),
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
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| {
                        invalid_closed_statuses(
                            "Freshservice `closed_statuses` are status numbers such as 4 (Resolved) and 5 (Closed)",
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if numbers.is_empty() {
            return Err(invalid_closed_statuses(
                "Freshservice `closed_statuses` cannot be empty (the default is [4, 5])",
            ));
        }
        Ok(ClosedStatuses::Numbers(numbers))
    }

    fn default_closed_statuses(&self) -> ClosedStatuses {
        ClosedStatuses::Numbers(FRESHSERVICE_DEFAULT_CLOSED.to_vec())
    }

    fn destination(&self, fields: &DestinationFields<'_>) -> Result<TicketDestination, String> {
        if fields.project.is_some() || fields.issue_type.is_some() {
            return Err(
                "`project` and `issue_type` apply to Jira; a freshservice connection takes `group_id` and `priority`"
                    .into(),
            );
        }
        let priority = fields.priority.unwrap_or(DEFAULT_PRIORITY);
        if !(1..=4).contains(&priority) {
            return Err("`priority` must be 1 (Low) to 4 (Urgent)".into());
        }
        if fields.group_id == Some(0) {
            return Err("`group_id` must be a Freshservice group id".into());
        }
        Ok(TicketDestination {
            group_id: fields.group_id,
            priority: Some(priority),
            ..TicketDestination::default()
        })
    }
}

impl TicketSystemModule for Freshservice {
    /// Basic with the API key as the user name and `X` as the password.
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<HeaderValue, TicketSystemError> {
        let credentials = &secrets.credentials;
        if credentials.method != AuthMethod::API_KEY {
            return Err(missing_setting(settings, "API key"));
        }
        basic(credentials.secret.expose(), "X")
    }

    fn client(
        &self,
        http: TicketHttp,
        settings: &ConnectionSettings,
        _secrets: &ConnectionSecrets,
        _options: &ClientOptions,
    ) -> Arc<dyn TicketSystem> {
        Arc::new(FreshserviceClient::new(
            http,
            settings.closed_statuses.clone(),
        ))
    }
}
