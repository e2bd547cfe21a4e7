//! What Jira means for a connection's settings (DESIGN §6): Cloud signs in with an e-mail and API token, Data
//! Center with a personal access token or a user name and password; closed statuses are status names; tickets
//! go to a project key and issue type.

use std::sync::Arc;

use super::{JiraCloudClient, JiraDataCenterClient, Plan, Rest};
use crate::adapters::ticket_http::{TicketHttp, basic, bearer, missing_setting};
use crate::adapters::ticket_systems::fields::{
    check_credential, check_email, check_username, given, invalid_closed_statuses, keep_current,
    reject_foreign_fields, required,
};
use crate::adapters::ticket_systems::{ClientOptions, TicketSystemModule};
use crate::domain::connection::ConnectionSecrets;
use crate::domain::connection::{
    AuthMethod, ClosedStatuses, ConnectionKind, ConnectionSettings, Credentials, TokenType,
};
use crate::domain::ticket_writes::{DEFAULT_ISSUE_TYPE, TicketDestination};
use crate::ports::TicketSystemError;
use crate::ports::{
    CheckedCredentials, ClosedStatusesDescription, CredentialFields, DeliveryRules,
    DestinationFields, FieldDescription, HostForm, KindDescription, SettingsError, TicketSystem,
    TicketSystemKind, WebhookDescription, WebhookSource,
};
use reqwest::header::HeaderValue;

/// Jira's webhook registration (the README's steps).
const JIRA_STEPS_CLOUD: &[&str] = &[
    "In Jira: System → WebHooks → Create a WebHook (a Jira admin).",
    "URL: `{url}`",
    "Secret: the connection's webhook secret (Jira then signs every delivery with `X-Hub-Signature`).",
    "Events: Issue → updated and Issue → deleted.",
    "A JQL filter so only relevant issues are sent, e.g. `project in (SEC, OPS)`.",
    "Without admin webhooks, a Jira Automation rule (Issue transitioned → Send web request) can POST to the same URL with the header `X-Ticketbound-Secret`.",
];

/// Jira Data Center's webhook registration.
const JIRA_STEPS_DATA_CENTER: &[&str] = &[
    "In Jira: Administration → System → WebHooks → Create a WebHook.",
    "URL: `{url}`",
    "Secret: the connection's webhook secret (Data Center signs every delivery with `X-Hub-Signature`). If your version's form has no Secret field but offers basic authentication: any user name, the webhook secret as the password.",
    "Events: Issue → updated and Issue → deleted.",
    "A JQL filter so only relevant issues are sent, e.g. `project in (SEC, OPS)`.",
    "Without admin webhooks, a Jira Automation rule (Issue transitioned → Send web request) can POST to the same URL with the header `X-Ticketbound-Secret`.",
];

/// Both Jiras write closed statuses as names.
fn jira_closed_statuses() -> ClosedStatusesDescription {
    ClosedStatusesDescription {
        help: "Status names that count as closed besides the Done category, e.g. Won't Do.",
        default: ClosedStatuses::Names(Vec::new()),
    }
}

/// Jira Cloud (REST v3, e-mail + API token).
pub struct JiraCloud;

/// Jira Data Center (REST v2, a personal access token or user name + password).
pub struct JiraDataCenter;

/// Both Jiras' deliveries arrive at `/webhooks/jira/{connection}`.
pub const WEBHOOK_SOURCE: WebhookSource = WebhookSource {
    path: "jira",
    name: "Jira",
};

impl TicketSystemKind for JiraCloud {
    fn kind(&self) -> ConnectionKind {
        ConnectionKind::JiraCloud
    }

    fn describe(&self) -> KindDescription {
        KindDescription {
            kind: self.kind(),
            label: "Jira Cloud",
            fields: vec![
                FieldDescription::text(
                    "site",
                    "Site",
                    "acme, acme.atlassian.net, or a full https:// URL",
                ),
                FieldDescription::text(
                    "email",
                    "Account e-mail",
                    "The Atlassian account the API token belongs to.",
                ),
                FieldDescription::secret(
                    "api_token",
                    "API token",
                    "An API token of that account (classic, or with scopes).",
                ),
                FieldDescription {
                    choices: &["classic", "scoped"],
                    ..FieldDescription::text(
                        "token_type",
                        "Token type",
                        "Leave empty to detect it; scoped tokens go through Atlassian's API gateway.",
                    )
                    .optional()
                },
            ],
            closed_statuses: jira_closed_statuses(),
            webhook: WebhookDescription {
                path: "/webhooks/jira/{connection}",
                steps: JIRA_STEPS_CLOUD,
            },
        }
    }

    fn webhook_source(&self) -> WebhookSource {
        WEBHOOK_SOURCE
    }

    fn deliveries(&self) -> &'static dyn DeliveryRules {
        &super::events::JiraDeliveries
    }

    fn canonical_key(&self, key: &str) -> String {
        super::canonical_issue_key(key)
    }

    fn host_form(&self) -> Option<HostForm> {
        Some(HostForm {
            field: "site",
            suffix: ".atlassian.net",
        })
    }

    fn base_url_fields(&self) -> &'static str {
        "`base_url` (or `site`)"
    }

    fn credential_fields(&self) -> &'static [&'static str] {
        &["email", "api_token"]
    }

    fn new_credentials(
        &self,
        input: &CredentialFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let email = check_email(input.email.as_deref().ok_or_else(|| {
            SettingsError::new(
                "missing_credentials",
                "`email` (the API token's account) is required for a jira_cloud connection",
            )
        })?)?;
        let api_token = required(self.kind(), "api_token", &input.api_token)?;
        Ok(CheckedCredentials {
            credentials: Credentials::ApiToken { api_token },
            email: Some(email),
            username: None,
        })
    }

    fn changed_credentials(
        &self,
        settings: &ConnectionSettings,
        current: Option<&Credentials>,
        input: &CredentialFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let email = match &input.email {
            Some(e) => Some(check_email(e)?),
            None => settings.email.clone(),
        };
        let credentials = match given(&input.api_token) {
            Some(api_token) => {
                check_credential("api_token", &api_token)?;
                Credentials::ApiToken { api_token }
            }
            None => keep_current(settings, current)?,
        };
        Ok(CheckedCredentials {
            credentials,
            email,
            username: None,
        })
    }

    fn closed_statuses(
        &self,
        values: &[serde_json::Value],
    ) -> Result<ClosedStatuses, SettingsError> {
        closed_status_names(values)
    }

    fn default_closed_statuses(&self) -> ClosedStatuses {
        ClosedStatuses::Names(Vec::new())
    }

    fn destination(&self, fields: &DestinationFields<'_>) -> Result<TicketDestination, String> {
        destination(self.kind(), fields)
    }

    fn takes_token_type(&self) -> bool {
        true
    }
}

impl TicketSystemModule for JiraCloud {
    /// Basic with the account's e-mail and API token.
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<HeaderValue, TicketSystemError> {
        match &secrets.credentials {
            Credentials::ApiToken { api_token } => basic(
                settings
                    .email
                    .as_deref()
                    .ok_or_else(|| missing_setting(settings, "email"))?,
                api_token.expose(),
            ),
            _ => Err(missing_setting(settings, "API token")),
        }
    }

    /// Calls go where the token type says: the site (classic), the API gateway (scoped), or, when the admin did
    /// not say, where `verify` last found the token working, with the other tried on a 401.
    fn client(
        &self,
        http: TicketHttp,
        settings: &ConnectionSettings,
        options: &ClientOptions,
    ) -> Arc<dyn TicketSystem> {
        let plan = match settings.token_type {
            Some(given) => Plan::Fixed(given),
            None => Plan::Detect {
                first: settings.detected_token_type.unwrap_or(TokenType::Classic),
            },
        };
        let rest = Rest::new(
            http,
            options.atlassian_gateway.clone(),
            plan,
            settings.cloud_id.clone(),
        );
        Arc::new(JiraCloudClient::new(rest, settings.closed_statuses.clone()))
    }
}

impl TicketSystemKind for JiraDataCenter {
    fn kind(&self) -> ConnectionKind {
        ConnectionKind::JiraDataCenter
    }

    fn describe(&self) -> KindDescription {
        KindDescription {
            kind: self.kind(),
            label: "Jira Data Center",
            fields: vec![
                FieldDescription::text("base_url", "Base URL", "https://jira.example.com"),
                FieldDescription::secret(
                    "personal_access_token",
                    "Personal access token",
                    "A token of the service account; or give a user name and password instead.",
                )
                .in_group("token"),
                FieldDescription::text("username", "User name", "The service account's user name.")
                    .in_group("password"),
                FieldDescription::secret("password", "Password", "Its password.")
                    .in_group("password"),
            ],
            closed_statuses: jira_closed_statuses(),
            webhook: WebhookDescription {
                path: "/webhooks/jira/{connection}",
                steps: JIRA_STEPS_DATA_CENTER,
            },
        }
    }

    fn webhook_source(&self) -> WebhookSource {
        WEBHOOK_SOURCE
    }

    fn deliveries(&self) -> &'static dyn DeliveryRules {
        &super::events::JiraDeliveries
    }

    fn canonical_key(&self, key: &str) -> String {
        super::canonical_issue_key(key)
    }

    fn host_form(&self) -> Option<HostForm> {
        None
    }

    fn base_url_fields(&self) -> &'static str {
        "`base_url`"
    }

    fn credential_fields(&self) -> &'static [&'static str] {
        &["personal_access_token", "username", "password"]
    }

    fn new_credentials(
        &self,
        input: &CredentialFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_ambiguous(self, input)?;
        if input.personal_access_token.is_some() {
            let token = required(
                self.kind(),
                "personal_access_token",
                &input.personal_access_token,
            )?;
            return Ok(CheckedCredentials {
                credentials: Credentials::PersonalAccessToken {
                    personal_access_token: token,
                },
                email: None,
                username: None,
            });
        }
        match (&input.username, &input.password) {
            (Some(username), Some(_)) => {
                let username = check_username(username)?;
                let password = required(self.kind(), "password", &input.password)?;
                Ok(CheckedCredentials {
                    credentials: Credentials::Password { password },
                    email: None,
                    username: Some(username),
                })
            }
            _ => Err(SettingsError::new(
                "missing_credentials",
                "a jira_data_center connection needs `personal_access_token`, or `username` and `password`",
            )),
        }
    }

    fn changed_credentials(
        &self,
        settings: &ConnectionSettings,
        current: Option<&Credentials>,
        input: &CredentialFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_ambiguous(self, input)?;
        if let Some(token) = given(&input.personal_access_token) {
            check_credential("personal_access_token", &token)?;
            return Ok(CheckedCredentials {
                credentials: Credentials::PersonalAccessToken {
                    personal_access_token: token,
                },
                email: None,
                username: None,
            });
        }
        let username = input
            .username
            .as_deref()
            .map(check_username)
            .transpose()?
            .or_else(|| settings.username.clone());
        let credentials = match given(&input.password) {
            Some(password) => {
                check_credential("password", &password)?;
                Credentials::Password { password }
            }
            None => keep_current(settings, current)?,
        };
        if credentials.method() == AuthMethod::Password {
            let username = username.ok_or_else(|| {
                SettingsError::new(
                    "missing_credentials",
                    "`password` needs `username` on a connection that used a personal access token",
                )
            })?;
            Ok(CheckedCredentials {
                credentials,
                email: None,
                username: Some(username),
            })
        } else if input.username.is_some() {
            Err(SettingsError::new(
                "missing_credentials",
                "to switch to `username` + `password`, give both",
            ))
        } else {
            Ok(CheckedCredentials {
                credentials,
                email: None,
                username: None,
            })
        }
    }

    fn closed_statuses(
        &self,
        values: &[serde_json::Value],
    ) -> Result<ClosedStatuses, SettingsError> {
        closed_status_names(values)
    }

    fn default_closed_statuses(&self) -> ClosedStatuses {
        ClosedStatuses::Names(Vec::new())
    }

    fn destination(&self, fields: &DestinationFields<'_>) -> Result<TicketDestination, String> {
        destination(self.kind(), fields)
    }
}

impl TicketSystemModule for JiraDataCenter {
    /// Bearer with a personal access token, or Basic with a user name and password.
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<HeaderValue, TicketSystemError> {
        match &secrets.credentials {
            Credentials::PersonalAccessToken {
                personal_access_token,
            } => bearer(personal_access_token.expose()),
            Credentials::Password { password } => basic(
                settings
                    .username
                    .as_deref()
                    .ok_or_else(|| missing_setting(settings, "username"))?,
                password.expose(),
            ),
            _ => Err(missing_setting(
                settings,
                "personal access token or password",
            )),
        }
    }

    fn client(
        &self,
        http: TicketHttp,
        settings: &ConnectionSettings,
        options: &ClientOptions,
    ) -> Arc<dyn TicketSystem> {
        let rest = Rest::new(
            http,
            options.atlassian_gateway.clone(),
            Plan::Fixed(TokenType::Classic),
            None,
        );
        Arc::new(JiraDataCenterClient::new(
            rest,
            settings.closed_statuses.clone(),
        ))
    }
}

/// Data Center takes one way to sign in: a token, or a user name and password.
fn reject_ambiguous(
    system: &JiraDataCenter,
    input: &CredentialFields,
) -> Result<(), SettingsError> {
    reject_foreign_fields(system, input)?;
    if input.personal_access_token.is_some()
        && (input.username.is_some() || input.password.is_some())
    {
        return Err(SettingsError::new(
            "ambiguous_credentials",
            "give either `personal_access_token` or `username` + `password`, not both",
        ));
    }
    Ok(())
}

/// Jira closed statuses are status names (1 to 100 characters each).
fn closed_status_names(values: &[serde_json::Value]) -> Result<ClosedStatuses, SettingsError> {
    let names = values
        .iter()
        .map(|v| match v.as_str().map(str::trim) {
            Some(name) if !name.is_empty() && name.len() <= 100 => Ok(name.to_owned()),
            _ => Err(invalid_closed_statuses(
                "Jira `closed_statuses` are status names such as \"Won't Do\" (1 to 100 characters each)",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClosedStatuses::Names(names))
}

/// A Jira destination: a project key (required) and an issue type (default `Task`).
fn destination(
    kind: ConnectionKind,
    fields: &DestinationFields<'_>,
) -> Result<TicketDestination, String> {
    if fields.group_id.is_some() || fields.priority.is_some() {
        return Err(format!(
            "`group_id` and `priority` apply to Freshservice; a {} connection takes `project` and `issue_type`",
            kind.as_str()
        ));
    }
    let project = fields.project.map(str::trim).unwrap_or_default();
    let valid_project = (1..=20).contains(&project.len())
        && project.starts_with(|c: char| c.is_ascii_uppercase())
        && project
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !valid_project {
        return Err(
            "`project` must be a Jira project key such as SEC (upper-case letters, digits, `_`)"
                .into(),
        );
    }
    let issue_type = fields
        .issue_type
        .map(str::trim)
        .unwrap_or(DEFAULT_ISSUE_TYPE);
    if issue_type.is_empty() || issue_type.len() > 60 || issue_type.chars().any(char::is_control) {
        return Err(
            "`issue_type` must be an issue type name such as Task (1 to 60 characters)".into(),
        );
    }
    Ok(TicketDestination::Jira {
        project: project.to_owned(),
        issue_type: issue_type.to_owned(),
    })
}
