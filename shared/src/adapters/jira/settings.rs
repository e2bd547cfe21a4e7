//! What Jira means for a connection's settings (DESIGN §6): Cloud signs in with an e-mail and API token, Data
//! Center with a personal access token or a user name and password; closed statuses are status names; tickets
//! go to a project key and issue type.

use std::sync::Arc;

use super::{JiraCloudClient, JiraDataCenterClient, Plan, Rest};
use crate::adapters::ticket_http::{TicketHttp, basic, bearer, missing_setting};
use crate::adapters::ticket_systems::fields::{
    check_credential, check_email, check_username, fields_of, given, invalid_closed_statuses,
    keep_current, reject_foreign_fields, required, secret, stored, text,
};
use crate::adapters::ticket_systems::{ClientOptions, TicketSystemModule};
use crate::domain::connection::ConnectionSecrets;
use crate::domain::connection::{
    ApiRoute, AuthMethod, ClosedStatuses, ConnectionKind, ConnectionSettings, Credentials,
    KindFields,
};
use crate::domain::ticket_writes::{DEFAULT_ISSUE_TYPE, TicketDestination};
use crate::ports::TicketSystemError;
use crate::ports::{
    CheckedCredentials, ClosedStatusesDescription, DeliveryRules, DestinationFields,
    FieldDescription, HostForm, KindDescription, SettingsError, TicketSystem, TicketSystemKind,
    WebhookDescription, WebhookSource,
};
use reqwest::header::HeaderValue;

/// Jira Cloud's name in the API.
pub const JIRA_CLOUD: ConnectionKind = ConnectionKind::named("jira_cloud");
/// Jira Data Center's name in the API.
pub const JIRA_DATA_CENTER: ConnectionKind = ConnectionKind::named("jira_data_center");

/// The names the code and tests used when kinds were an enum.
#[allow(non_upper_case_globals)]
impl ConnectionKind {
    pub const JiraCloud: Self = JIRA_CLOUD;
    pub const JiraDataCenter: Self = JIRA_DATA_CENTER;
}

/// A Jira Cloud API token's kind (Atlassian: "API token" and "API token with scopes"). Scoped tokens, and every
/// token of an Atlassian service account, work only through the API gateway
/// (`https://api.atlassian.com/ex/jira/{cloudId}`); on the site URL they get 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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

    /// The token type named `name` as the API spells it.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Classic, Self::Scoped]
            .into_iter()
            .find(|t| t.as_str() == name)
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

/// A plausible Atlassian cloud id: a UUID as tenant info gives it (letters, digits and `-`, at most 64), so it
/// can only ever be one path segment of the gateway URL.
pub fn is_cloud_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Jira Cloud's own settings, as stored in the connection's kind fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JiraCloudSettings {
    /// The account the API token belongs to.
    pub email: Option<String>,
    /// The kind of API token as the admin gave it; `None` detects it.
    pub token_type: Option<TokenType>,
    /// The kind of token `verify` last found working (what detection tries first).
    pub detected_token_type: Option<TokenType>,
    /// The site's cloud id (from its public tenant info), which names it on the API gateway.
    pub cloud_id: Option<String>,
}

impl JiraCloudSettings {
    /// The settings of `settings`; a member of an unexpected form reads as absent.
    pub fn of(settings: &ConnectionSettings) -> Self {
        let token_type = |field| stored(settings, field).and_then(|t| TokenType::parse(&t));
        Self {
            email: stored(settings, "email"),
            token_type: token_type("token_type"),
            detected_token_type: token_type("detected_token_type"),
            cloud_id: stored(settings, "cloud_id"),
        }
    }

    /// What `verify` learnt, to keep: where the token worked and, once known, the site's cloud id.
    pub fn learned(api: ApiRoute, cloud_id: Option<String>) -> KindFields {
        let detected = match api {
            ApiRoute::Site => TokenType::Classic,
            ApiRoute::Gateway => TokenType::Scoped,
        };
        fields_of([
            ("detected_token_type", Some(detected.as_str().to_owned())),
            ("cloud_id", cloud_id),
        ])
    }
}

/// `token_type` as given: a token type, or `null` to detect it (`Ok(None)`).
fn token_type(input: &KindFields) -> Result<Option<TokenType>, SettingsError> {
    match text(input, "token_type") {
        None => Ok(None),
        Some(name) => TokenType::parse(&name).map(Some).ok_or_else(|| {
            SettingsError::new(
                "invalid_token_type",
                "`token_type` is `classic`, `scoped`, or null to detect it",
            )
        }),
    }
}

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
        JIRA_CLOUD
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
        &["email", "api_token", "token_type"]
    }

    fn new_credentials(&self, input: &KindFields) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let email = check_email(&text(input, "email").ok_or_else(|| {
            SettingsError::new(
                "missing_credentials",
                "`email` (the API token's account) is required for a jira_cloud connection",
            )
        })?)?;
        let api_token = required(self.kind(), "api_token", &secret(input, "api_token"))?;
        let token_type = token_type(input)?;
        Ok(CheckedCredentials {
            credentials: Credentials::new(AuthMethod::API_TOKEN, api_token),
            fields: fields_of([
                ("email", Some(email)),
                ("token_type", token_type.map(|t| t.as_str().to_owned())),
            ]),
        })
    }

    fn changed_credentials(
        &self,
        settings: &ConnectionSettings,
        current: Option<&Credentials>,
        input: &KindFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_foreign_fields(self, input)?;
        let mut fields = settings.fields.clone();
        if let Some(email) = text(input, "email") {
            fields.insert("email".into(), check_email(&email)?.into());
        }
        if input.contains_key("token_type") {
            // `null` detects the type again.
            match token_type(input)? {
                Some(t) => fields.insert("token_type".into(), t.as_str().into()),
                None => fields.remove("token_type"),
            };
        }
        let credentials = match given(&secret(input, "api_token")) {
            Some(api_token) => {
                check_credential("api_token", &api_token)?;
                Credentials::new(AuthMethod::API_TOKEN, api_token)
            }
            None => keep_current(settings, current)?,
        };
        Ok(CheckedCredentials {
            credentials,
            fields,
        })
    }

    fn learned_fields(&self) -> &'static [&'static str] {
        &["detected_token_type", "cloud_id"]
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

impl TicketSystemModule for JiraCloud {
    /// Basic with the account's e-mail and API token.
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<HeaderValue, TicketSystemError> {
        let credentials = &secrets.credentials;
        if credentials.method != AuthMethod::API_TOKEN {
            return Err(missing_setting(settings, "API token"));
        }
        basic(
            &stored(settings, "email").ok_or_else(|| missing_setting(settings, "email"))?,
            credentials.secret.expose(),
        )
    }

    /// Calls go where the token type says: the site (classic), the API gateway (scoped), or, when the admin did
    /// not say, where `verify` last found the token working, with the other tried on a 401.
    fn client(
        &self,
        http: TicketHttp,
        settings: &ConnectionSettings,
        _secrets: &ConnectionSecrets,
        options: &ClientOptions,
    ) -> Arc<dyn TicketSystem> {
        let own = JiraCloudSettings::of(settings);
        let plan = match own.token_type {
            Some(given) => Plan::Fixed(given),
            None => Plan::Detect {
                first: own.detected_token_type.unwrap_or(TokenType::Classic),
            },
        };
        let rest = Rest::new(http, options.atlassian_gateway.clone(), plan, own.cloud_id);
        Arc::new(JiraCloudClient::new(rest, settings.closed_statuses.clone()))
    }
}

impl TicketSystemKind for JiraDataCenter {
    fn kind(&self) -> ConnectionKind {
        JIRA_DATA_CENTER
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

    fn new_credentials(&self, input: &KindFields) -> Result<CheckedCredentials, SettingsError> {
        reject_ambiguous(self, input)?;
        let token = secret(input, "personal_access_token");
        if token.is_some() {
            let token = required(self.kind(), "personal_access_token", &token)?;
            return Ok(CheckedCredentials {
                credentials: Credentials::new(AuthMethod::PERSONAL_ACCESS_TOKEN, token),
                fields: KindFields::new(),
            });
        }
        let password = secret(input, "password");
        match (text(input, "username"), &password) {
            (Some(username), Some(_)) => {
                let username = check_username(&username)?;
                let password = required(self.kind(), "password", &password)?;
                Ok(CheckedCredentials {
                    credentials: Credentials::new(AuthMethod::PASSWORD, password),
                    fields: fields_of([("username", Some(username))]),
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
        input: &KindFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        reject_ambiguous(self, input)?;
        if let Some(token) = given(&secret(input, "personal_access_token")) {
            check_credential("personal_access_token", &token)?;
            return Ok(CheckedCredentials {
                credentials: Credentials::new(AuthMethod::PERSONAL_ACCESS_TOKEN, token),
                fields: KindFields::new(),
            });
        }
        let given_username = text(input, "username");
        let username = given_username
            .as_deref()
            .map(check_username)
            .transpose()?
            .or_else(|| stored(settings, "username"));
        let credentials = match given(&secret(input, "password")) {
            Some(password) => {
                check_credential("password", &password)?;
                Credentials::new(AuthMethod::PASSWORD, password)
            }
            None => keep_current(settings, current)?,
        };
        if credentials.method() == AuthMethod::PASSWORD {
            let username = username.ok_or_else(|| {
                SettingsError::new(
                    "missing_credentials",
                    "`password` needs `username` on a connection that used a personal access token",
                )
            })?;
            Ok(CheckedCredentials {
                credentials,
                fields: fields_of([("username", Some(username))]),
            })
        } else if given_username.is_some() {
            Err(SettingsError::new(
                "missing_credentials",
                "to switch to `username` + `password`, give both",
            ))
        } else {
            Ok(CheckedCredentials {
                credentials,
                fields: KindFields::new(),
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
        let credentials = &secrets.credentials;
        match credentials.method {
            AuthMethod::PERSONAL_ACCESS_TOKEN => bearer(credentials.secret.expose()),
            AuthMethod::PASSWORD => basic(
                &stored(settings, "username")
                    .ok_or_else(|| missing_setting(settings, "username"))?,
                credentials.secret.expose(),
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
        _secrets: &ConnectionSecrets,
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
fn reject_ambiguous(system: &JiraDataCenter, input: &KindFields) -> Result<(), SettingsError> {
    reject_foreign_fields(system, input)?;
    let has = |field| text(input, field).is_some();
    if has("personal_access_token") && (has("username") || has("password")) {
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
    Ok(TicketDestination {
        project: Some(project.to_owned()),
        issue_type: Some(issue_type.to_owned()),
        ..TicketDestination::default()
    })
}
