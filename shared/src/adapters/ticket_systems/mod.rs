//! The registry of ticket systems: [`system`] is the one exhaustive `match` on [`ConnectionKind`], and
//! [`HttpTicketSystems`] builds the right client for a connection's kind over one shared HTTP client.
//!
//! A ticket system lives in its own folder beside this one (`jira/`, `freshservice/`) and implements
//! [`TicketSystemModule`] once; adding one is a folder and a line in [`system`] (docs/architecture.md).

use std::sync::Arc;

use super::freshservice::Freshservice;
use super::jira::{JiraCloud, JiraDataCenter};
use super::servicenow::ServiceNow;
use super::ticket_http::{HttpPolicy, TicketHttp, build_client};
use crate::domain::connection::{ConnectionKind, ConnectionSecrets, ConnectionSettings};
use crate::ports::{TicketSystem, TicketSystemError, TicketSystemKind, TicketSystems};

pub(crate) mod fields;

/// A ticket system: its settings rules ([`TicketSystemKind`]) and its client over the shared HTTP plumbing.
pub(crate) trait TicketSystemModule: TicketSystemKind {
    /// How a connection of this kind signs in: its `Authorization` header, marked sensitive (built with
    /// `ticket_http::basic` or `bearer`).
    fn authorization(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<reqwest::header::HeaderValue, TicketSystemError>;
    /// The client of one connection: `http` is signed in and based on its `base_url`.
    fn client(
        &self,
        http: TicketHttp,
        settings: &ConnectionSettings,
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

/// The ticket system of a kind. No `_ =>`: a new kind does not compile until it has its module.
pub(crate) fn system(kind: ConnectionKind) -> &'static dyn TicketSystemModule {
    match kind {
        ConnectionKind::JiraCloud => &JiraCloud,
        ConnectionKind::JiraDataCenter => &JiraDataCenter,
        ConnectionKind::Freshservice => &Freshservice,
        ConnectionKind::ServiceNow => &ServiceNow,
    }
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
        )?;
        Ok(system.client(http, settings, &self.options))
    }

    fn kind(&self, kind: ConnectionKind) -> &'static dyn TicketSystemKind {
        system(kind)
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
    use crate::ports::{CredentialFields, DestinationFields};
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
            email: Some("bot@example.com".into()),
            username: Some("svc".into()),
            closed_statuses: system(kind).default_closed_statuses(),
            webhook_secrets_active: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            audit: None,
            people: Default::default(),
            token_type: None,
            detected_token_type: None,
            cloud_id: None,
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
            &secrets(Credentials::ApiToken {
                api_token: Secret::new("tok"),
            }),
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
            &secrets(Credentials::PersonalAccessToken {
                personal_access_token: Secret::new("pat"),
            }),
        )
        .unwrap();
        assert_eq!(pat, "Bearer pat");
        let fs = authorization(
            &settings(ConnectionKind::Freshservice, AuthMethod::ApiKey),
            &secrets(Credentials::ApiKey {
                api_key: Secret::new("key"),
            }),
        )
        .unwrap();
        // base64("key:X")
        assert_eq!(fs, "Basic a2V5Olg=");
        let snow = authorization(
            &settings(ConnectionKind::ServiceNow, AuthMethod::Password),
            &secrets(Credentials::Password {
                password: Secret::new("pw"),
            }),
        )
        .unwrap();
        // base64("svc:pw")
        assert_eq!(snow, "Basic c3ZjOnB3");
        assert!(snow.is_sensitive());
        // Credentials of another kind sign nobody in.
        assert!(
            authorization(
                &settings(ConnectionKind::ServiceNow, AuthMethod::ApiKey),
                &secrets(Credentials::ApiKey {
                    api_key: Secret::new("key"),
                }),
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

    #[test]
    fn credentials_must_fit_the_kind() {
        let input = CredentialFields {
            api_key: Some(Secret::new("k")),
            ..CredentialFields::default()
        };
        assert!(
            system(ConnectionKind::JiraCloud)
                .new_credentials(&input)
                .is_err()
        );
        let fs = system(ConnectionKind::Freshservice)
            .new_credentials(&input)
            .unwrap();
        assert_eq!(fs.credentials.method(), AuthMethod::ApiKey);
        let both = CredentialFields {
            personal_access_token: Some(Secret::new("p")),
            username: Some("u".into()),
            password: Some(Secret::new("pw")),
            ..CredentialFields::default()
        };
        assert!(
            system(ConnectionKind::JiraDataCenter)
                .new_credentials(&both)
                .is_err()
        );
        let masked = CredentialFields {
            api_key: Some(Secret::new(MASK)),
            ..CredentialFields::default()
        };
        assert!(
            system(ConnectionKind::Freshservice)
                .new_credentials(&masked)
                .is_err()
        );
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
            Ok(TicketDestination::Jira {
                project: "SEC".into(),
                issue_type: "Task".into()
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
            Ok(TicketDestination::Freshservice {
                group_id: Some(7),
                priority: 2
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
    fn every_kind_is_registered_as_itself() {
        for kind in ConnectionKind::ALL {
            assert_eq!(system(kind).kind(), kind);
            assert_eq!(ConnectionKind::parse(kind.as_str()), Some(kind));
        }
    }
}
