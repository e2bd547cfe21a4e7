//! [`HttpTicketSystems`]: builds the right client for a connection's kind, over one shared HTTP client.

use std::sync::Arc;

use super::freshservice::FreshserviceClient;
use super::jira::{JiraCloudClient, JiraDataCenterClient};
use super::ticket_http::{HttpPolicy, TicketHttp, authorization, build_client};
use crate::domain::connection::{ConnectionKind, ConnectionSecrets, ConnectionSettings};
use crate::ports::{TicketSystem, TicketSystemError, TicketSystems};

/// The ticket-system clients over reqwest (rustls).
#[derive(Clone)]
pub struct HttpTicketSystems {
    client: reqwest::Client,
    policy: HttpPolicy,
}

impl HttpTicketSystems {
    /// `policy` bounds every call (tests shorten the timeouts).
    pub fn new(policy: HttpPolicy) -> Result<Self, TicketSystemError> {
        Ok(Self {
            client: build_client()?,
            policy,
        })
    }
}

impl TicketSystems for HttpTicketSystems {
    fn connect(
        &self,
        settings: &ConnectionSettings,
        secrets: &ConnectionSecrets,
    ) -> Result<Arc<dyn TicketSystem>, TicketSystemError> {
        let http = TicketHttp::new(
            self.client.clone(),
            &settings.base_url,
            authorization(settings, secrets)?,
            self.policy.clone(),
        )?;
        let closed = settings.closed_statuses.clone();
        Ok(match settings.kind {
            ConnectionKind::JiraCloud => Arc::new(JiraCloudClient::new(http, closed)),
            ConnectionKind::JiraDataCenter => Arc::new(JiraDataCenterClient::new(http, closed)),
            ConnectionKind::Freshservice => Arc::new(FreshserviceClient::new(http, closed)),
        })
    }
}
