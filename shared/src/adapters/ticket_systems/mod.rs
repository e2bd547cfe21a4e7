//! The registry of ticket systems: [`SYSTEMS`] lists every plug-in of this build, [`system`] finds a
//! connection's by its kind's name, and [`HttpTicketSystems`] builds the right client for a connection's kind
//! over one shared HTTP client.
//!
//! A ticket system lives in its own folder (`jira/`, `freshservice/` beside this one, or inside it) and
//! implements [`TicketSystemModule`] once: its name, settings, credentials, client and deliveries. Adding one is
//! its folder and a line in [`SYSTEMS`] (docs/architecture.md).

use std::sync::Arc;

use super::freshservice::Freshservice;
use super::jira::{JiraCloud, JiraDataCenter};
use super::servicenow::ServiceNow;
use super::ticket_http::{HttpPolicy, TicketHttp, build_client};
use crate::domain::connection::{ConnectionKind, ConnectionSecrets, ConnectionSettings};
use crate::ports::{TicketSystem, TicketSystemError, TicketSystemKind, TicketSystems};

pub(crate) mod client_credentials;
pub(crate) mod fields;
pub mod linear;
mod unregistered;

/// A ticket system: its settings rules ([`TicketSystemKind`]) and its client over the shared HTTP plumbing.
pub(crate) trait TicketSystemModule: TicketSystemKind {
    /// How a connection of this kind signs in: its `Authorization` header, marked sensitive (built with
    /// `ticket_http::basic` or `bearer`).
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<reqwest::header::HeaderValue, TicketSystemError>;
    /// The header [`Self::authorization`]'s value travels in: `Authorization`, unless the way the connection
    /// signs in names another (ServiceNow's API keys go in `x-sn-apikey`, and no `Authorization` is sent).
    fn credential_header(&self, secrets: &ConnectionSecrets) -> reqwest::header::HeaderName {
        let _ = secrets;
        reqwest::header::AUTHORIZATION
    }
    /// The client of one connection: `http` is signed in and based on its `base_url`; `secrets` are there for
    /// a client that signs in by itself (an OAuth client-credentials grant).
    fn client(
        &self,
        http: TicketHttp,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
        options: &ClientOptions,
    ) -> Arc<dyn TicketSystem>;
}

/// What every client of a deployment shares beyond the HTTP client.
#[derive(Clone, Debug)]
pub(crate) struct ClientOptions {
    /// The root of Atlassian's API gateway (`https://api.atlassian.com`), where Jira Cloud API tokens with
    /// scopes are sent as `/ex/jira/{cloudId}/…`.
    pub(crate) atlassian_gateway: url::Url,
}

/// Atlassian's API gateway.
pub const ATLASSIAN_GATEWAY: &str = "https://api.atlassian.com";

/// Every ticket system of this build, in the order `GET /v1/connection-kinds` lists them and the portal offers
/// them: the registry.
static SYSTEMS: &[&dyn TicketSystemModule] = &[
    // One line per ticket system.
    &JiraCloud,
    &JiraDataCenter,
    &Freshservice,
    &ServiceNow,
    &linear::Linear,
];

/// The ticket system of a kind; a kind no plug-in of this build has (a connection stored by a build that had
/// it) gets one that refuses every change and every call.
pub(crate) fn system(kind: ConnectionKind) -> &'static dyn TicketSystemModule {
    SYSTEMS
        .iter()
        .copied()
        .find(|system| system.kind() == kind)
        .unwrap_or(&unregistered::Unregistered)
}

/// Every kind of this build, in the registry's order.
pub fn kinds() -> Vec<ConnectionKind> {
    SYSTEMS.iter().map(|system| system.kind()).collect()
}

/// The ticket-system clients over reqwest (rustls).
#[derive(Clone)]
pub struct HttpTicketSystems {
    client: reqwest::Client,
    policy: HttpPolicy,
    options: ClientOptions,
}

impl HttpTicketSystems {
    /// `policy` bounds every call (tests shorten the timeouts).
    pub fn new(policy: HttpPolicy) -> Result<Self, TicketSystemError> {
        Ok(Self {
            client: build_client()?,
            policy,
            options: ClientOptions {
                atlassian_gateway: url::Url::parse(ATLASSIAN_GATEWAY).expect("a URL"),
            },
        })
    }

    /// The same clients with Atlassian's API gateway at `root` (tests point it at a local server). It must pass
    /// the outbound URL policy (https, or http to a loopback host) and carry no query.
    pub fn with_atlassian_gateway(mut self, root: &str) -> Result<Self, TicketSystemError> {
        let url = crate::domain::url_policy::check_outbound_url(root)
            .map_err(|e| TicketSystemError::Unexpected(format!("the API gateway URL: {e}")))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(TicketSystemError::Unexpected(
                "the API gateway URL must not carry a query or a fragment".into(),
            ));
        }
        self.options.atlassian_gateway = url;
        Ok(self)
    }
}

/// The settings rules of a kind, for callers outside the crate (tests build settings with its defaults).
pub fn rules(kind: ConnectionKind) -> &'static dyn TicketSystemKind {
    system(kind)
}

impl TicketSystems for HttpTicketSystems {
    fn connect(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<Arc<dyn TicketSystem>, TicketSystemError> {
        let system = system(settings.kind);
        let http = TicketHttp::new(
            self.client.clone(),
            &settings.base_url,
            system.authorization(settings, secrets)?,
            self.policy.clone(),
        )?
        .with_credential_header(system.credential_header(secrets));
        Ok(system.client(http, settings, secrets, &self.options))
    }

    fn kind(&self, kind: ConnectionKind) -> &'static dyn TicketSystemKind {
        system(kind)
    }

    fn kinds(&self) -> Vec<ConnectionKind> {
        kinds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::ticket_http::authorization;
    use crate::domain::connection::AuthMethod;
    use crate::domain::connection::ClosedStatuses;
    use crate::domain::connection::Credentials;
    use crate::domain::secret::{MASK, Secret};
    use crate::domain::ticket_writes::TicketDestination;
    use crate::ports::DestinationFields;
    use serde_json::json;
    use time::OffsetDateTime;

    #[test]
    fn each_kind_spells_a_typed_key_the_way_its_ticket_system_answers_it() {
        for kind in [ConnectionKind::JiraCloud, ConnectionKind::JiraDataCenter] {
            assert_eq!(system(kind).canonical_key("sec-42"), "SEC-42");
            assert_eq!(system(kind).canonical_key("Sec-42"), "SEC-42");
            assert_eq!(system(kind).canonical_key("SEC-42"), "SEC-42");
        }
        let fs = system(ConnectionKind::Freshservice);
        assert_eq!(fs.canonical_key("053263"), "53263");
        assert_eq!(fs.canonical_key("53263"), "53263");
        assert_eq!(fs.canonical_key("000"), "0");
        assert_eq!(
            fs.canonical_key("INC-12"),
            "INC-12",
            "not a number: no read accepts it, left alone"
        );
    }

    fn settings(kind: ConnectionKind, method: AuthMethod) -> ConnectionSettings {
        ConnectionSettings {
            id: "c".into(),
            kind,
            base_url: "https://x.example".into(),
            auth_method: method,
            closed_statuses: system(kind).default_closed_statuses(),
            webhook_secrets_active: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            audit: None,
            people: Default::default(),
            fields: json!({"email": "bot@example.com", "username": "svc"})
                .as_object()
                .cloned()
                .unwrap(),
        }
    }

    fn secrets(credentials: Credentials) -> ConnectionSecrets {
        ConnectionSecrets {
            credentials,
            webhook_secrets: vec![],
        }
    }

    #[test]
    fn each_kind_signs_in_its_own_way() {
        let cloud = authorization(
            &settings(ConnectionKind::JiraCloud, AuthMethod::ApiToken),
            &secrets(Credentials::new(AuthMethod::ApiToken, Secret::new("tok"))),
        )
        .unwrap();
        // base64("bot@example.com:tok")
        assert_eq!(cloud, "Basic Ym90QGV4YW1wbGUuY29tOnRvaw==");
        assert!(cloud.is_sensitive());
        let pat = authorization(
            &settings(
                ConnectionKind::JiraDataCenter,
                AuthMethod::PersonalAccessToken,
            ),
            &secrets(Credentials::new(
                AuthMethod::PersonalAccessToken,
                Secret::new("pat"),
            )),
        )
        .unwrap();
        assert_eq!(pat, "Bearer pat");
        let fs = authorization(
            &settings(ConnectionKind::Freshservice, AuthMethod::ApiKey),
            &secrets(Credentials::new(AuthMethod::ApiKey, Secret::new("key"))),
        )
        .unwrap();
        // base64("key:X")
        assert_eq!(fs, "Basic a2V5Olg=");
        let snow = authorization(
            &settings(ConnectionKind::ServiceNow, AuthMethod::Password),
            &secrets(Credentials::new(AuthMethod::Password, Secret::new("pw"))),
        )
        .unwrap();
        // base64("svc:pw")
        assert_eq!(snow, "Basic c3ZjOnB3");
        assert!(snow.is_sensitive());
        // A ServiceNow API key is sent as is, in its own header rather than `Authorization`.
        let snow_key = secrets(Credentials::new(
            AuthMethod::ApiKey,
            Secret::new("snow-key"),
        ));
        let key = authorization(
            &settings(ConnectionKind::ServiceNow, AuthMethod::ApiKey),
            &snow_key,
        )
        .unwrap();
        assert_eq!(key, "snow-key");
        assert!(key.is_sensitive());
        assert!(!format!("{key:?}").contains("snow-key"));
        let checked = system(ConnectionKind::ServiceNow)
            .new_credentials(&json!({"api_key": "snow-key"}).as_object().cloned().unwrap())
            .unwrap();
        assert_eq!(checked.credentials.method(), AuthMethod::ApiKey);
        assert!(checked.fields.is_empty());
        assert!(
            !format!("{checked:?}").contains("snow-key"),
            "the key is redacted in Debug"
        );
        let snow = system(ConnectionKind::ServiceNow);
        assert_eq!(snow.credential_header(&snow_key), "x-sn-apikey");
        assert_eq!(
            snow.credential_header(&secrets(Credentials::new(
                AuthMethod::Password,
                Secret::new("pw")
            ))),
            "authorization"
        );
        // Credentials of another kind sign nobody in.
        assert!(
            authorization(
                &settings(ConnectionKind::ServiceNow, AuthMethod::ApiToken),
                &secrets(Credentials::new(AuthMethod::ApiToken, Secret::new("key"))),
            )
            .is_err()
        );
        assert!(!format!("{fs:?}").contains("a2V5"));
    }

    #[test]
    fn closed_statuses_follow_the_kind() {
        let jira = system(ConnectionKind::JiraCloud)
            .closed_statuses(&[serde_json::json!("Won't Do")])
            .unwrap();
        assert_eq!(jira, ClosedStatuses::Names(vec!["Won't Do".into()]));
        let fs = system(ConnectionKind::Freshservice)
            .closed_statuses(&[serde_json::json!(5), serde_json::json!("6")])
            .unwrap();
        assert_eq!(fs, ClosedStatuses::Numbers(vec![5, 6]));
        assert!(
            system(ConnectionKind::Freshservice)
                .closed_statuses(&[serde_json::json!("Closed")])
                .is_err()
        );
        assert!(
            system(ConnectionKind::Freshservice)
                .closed_statuses(&[])
                .is_err()
        );
        assert!(
            system(ConnectionKind::JiraCloud)
                .closed_statuses(&[serde_json::json!(3)])
                .is_err()
        );
    }

    fn given(body: serde_json::Value) -> crate::domain::connection::KindFields {
        body.as_object().cloned().unwrap()
    }

    #[test]
    fn credentials_must_fit_the_kind() {
        let input = given(json!({"api_key": "k"}));
        assert_eq!(
            system(ConnectionKind::JiraCloud)
                .new_credentials(&input)
                .unwrap_err()
                .code,
            "field_not_applicable"
        );
        let fs = system(ConnectionKind::Freshservice)
            .new_credentials(&input)
            .unwrap();
        assert_eq!(fs.credentials.method(), AuthMethod::ApiKey);
        let both = given(json!({"personal_access_token": "p", "username": "u", "password": "pw"}));
        assert!(
            system(ConnectionKind::JiraDataCenter)
                .new_credentials(&both)
                .is_err()
        );
        let masked = given(json!({"api_key": MASK}));
        assert!(
            system(ConnectionKind::Freshservice)
                .new_credentials(&masked)
                .is_err()
        );
    }

    #[test]
    fn a_kind_keeps_its_own_settings_and_a_token_type_change_keeps_what_it_learnt() {
        let cloud = system(ConnectionKind::JiraCloud);
        let created = cloud
            .new_credentials(&given(
                json!({"email": " bot@example.com ", "api_token": "t", "token_type": "scoped"}),
            ))
            .unwrap();
        assert_eq!(
            created.fields,
            given(json!({"email": "bot@example.com", "token_type": "scoped"}))
        );
        let mut s = settings(ConnectionKind::JiraCloud, AuthMethod::ApiToken);
        s.fields = created.fields;
        s.fields.insert("cloud_id".into(), json!("abc"));
        let detect = cloud
            .changed_credentials(
                &s,
                Some(&created.credentials),
                &given(json!({"token_type": null})),
            )
            .unwrap();
        assert_eq!(
            detect.fields,
            given(json!({"email": "bot@example.com", "cloud_id": "abc"})),
            "null detects the type again; the rest is kept"
        );
        assert_eq!(detect.credentials, created.credentials);
        assert_eq!(
            cloud
                .new_credentials(&given(
                    json!({"email": "bot@example.com", "api_token": "t", "token_type": "other"})
                ))
                .unwrap_err()
                .code,
            "invalid_token_type"
        );
    }

    #[test]
    fn a_kind_this_build_does_not_have_refuses_everything() {
        let gone = system(ConnectionKind::named("zendesk"));
        assert!(gone.new_credentials(&given(json!({}))).is_err());
        assert!(
            authorization(
                &settings(ConnectionKind::named("zendesk"), AuthMethod::ApiKey),
                &secrets(Credentials::new(AuthMethod::ApiKey, Secret::new("key"))),
            )
            .is_err()
        );
        assert!(!kinds().contains(&ConnectionKind::named("zendesk")));
    }

    #[test]
    fn destinations_fit_the_kind() {
        let fields = |project, group_id, priority| DestinationFields {
            project,
            group_id,
            priority,
            ..DestinationFields::default()
        };
        assert_eq!(
            system(ConnectionKind::JiraCloud).destination(&fields(Some("SEC"), None, None)),
            Ok(TicketDestination {
                project: Some("SEC".into()),
                issue_type: Some("Task".into()),
                ..TicketDestination::default()
            })
        );
        assert!(
            system(ConnectionKind::JiraCloud)
                .destination(&fields(None, None, None))
                .is_err()
        );
        assert!(
            system(ConnectionKind::JiraCloud)
                .destination(&fields(Some("sec"), None, None))
                .is_err()
        );
        assert!(
            system(ConnectionKind::JiraDataCenter)
                .destination(&fields(Some("SEC"), Some(1), None))
                .is_err()
        );
        assert_eq!(
            system(ConnectionKind::Freshservice).destination(&fields(None, Some(7), None)),
            Ok(TicketDestination {
                group_id: Some(7),
                priority: Some(2),
                ..TicketDestination::default()
            })
        );
        assert!(
            system(ConnectionKind::Freshservice)
                .destination(&fields(None, None, Some(5)))
                .is_err()
        );
        assert!(
            system(ConnectionKind::Freshservice)
                .destination(&fields(Some("SEC"), None, None))
                .is_err()
        );
    }

    #[test]
    fn every_kind_is_registered_once_as_itself() {
        let all = kinds();
        for kind in &all {
            assert_eq!(system(*kind).kind(), *kind);
            assert_eq!(all.iter().filter(|k| *k == kind).count(), 1, "{kind:?}");
            let fields = system(*kind).credential_fields();
            for field in system(*kind).describe().fields {
                assert!(
                    field.name == "site"
                        || field.name == "domain"
                        || field.name == "base_url"
                        || fields.contains(&field.name),
                    "{kind:?}: the form's `{}` is one of the kind's own fields",
                    field.name
                );
            }
        }
    }
}
