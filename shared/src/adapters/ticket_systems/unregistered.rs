//! The rules of a kind that no plug-in of this build has: a connection written by a build that had it. It stays
//! listed and can be deleted, but every change, call and delivery is refused with a message that says why.

use std::sync::Arc;

use super::{ClientOptions, TicketSystemModule};
use crate::adapters::ticket_http::TicketHttp;
use crate::domain::connection::{
    ClosedStatuses, ConnectionKind, ConnectionSecrets, ConnectionSettings, Credentials, KindFields,
    WebhookSecrets,
};
use crate::domain::ticket_events::Delivery;
use crate::domain::ticket_writes::TicketDestination;
use crate::ports::{
    CheckedCredentials, ClosedStatusesDescription, DeliveryHeaders, DeliveryRefusal, DeliveryRules,
    DestinationFields, HostForm, KindDescription, SettingsError, TicketSystem, TicketSystemError,
    TicketSystemKind, WebhookDescription, WebhookSource,
};

/// A kind without a plug-in in this build.
pub(super) struct Unregistered;

const NOT_HERE: &str = "this kind of ticket system is not part of this build of Ticketbound";

fn refused() -> SettingsError {
    SettingsError::new("unknown_kind", NOT_HERE)
}

impl TicketSystemKind for Unregistered {
    fn kind(&self) -> ConnectionKind {
        ConnectionKind::named("unregistered")
    }

    fn describe(&self) -> KindDescription {
        KindDescription {
            kind: self.kind(),
            label: "Unregistered",
            fields: Vec::new(),
            closed_statuses: ClosedStatusesDescription {
                help: NOT_HERE,
                default: self.default_closed_statuses(),
            },
            webhook: WebhookDescription {
                path: "",
                steps: &[],
            },
        }
    }

    /// A path no route has, so no delivery ever finds such a connection.
    fn webhook_source(&self) -> WebhookSource {
        WebhookSource {
            path: "",
            name: "unregistered",
        }
    }

    fn deliveries(&self) -> &'static dyn DeliveryRules {
        &Unregistered
    }

    fn host_form(&self) -> Option<HostForm> {
        None
    }

    fn base_url_fields(&self) -> &'static str {
        "`base_url`"
    }

    fn credential_fields(&self) -> &'static [&'static str] {
        &[]
    }

    fn new_credentials(&self, _given: &KindFields) -> Result<CheckedCredentials, SettingsError> {
        Err(refused())
    }

    fn changed_credentials(
        &self,
        _settings: &ConnectionSettings,
        _current: Option<&Credentials>,
        _given: &KindFields,
    ) -> Result<CheckedCredentials, SettingsError> {
        Err(refused())
    }

    fn closed_statuses(
        &self,
        _values: &[serde_json::Value],
    ) -> Result<ClosedStatuses, SettingsError> {
        Err(refused())
    }

    fn default_closed_statuses(&self) -> ClosedStatuses {
        ClosedStatuses::Names(Vec::new())
    }

    fn destination(&self, _fields: &DestinationFields<'_>) -> Result<TicketDestination, String> {
        Err(NOT_HERE.into())
    }
}

impl DeliveryRules for Unregistered {
    fn proof_needs_body(&self, _headers: &dyn DeliveryHeaders) -> bool {
        false
    }

    fn authenticate(
        &self,
        _settings: &ConnectionSettings,
        _headers: &dyn DeliveryHeaders,
        _body: &[u8],
        _secrets: &WebhookSecrets,
    ) -> Result<(), DeliveryRefusal> {
        Err(DeliveryRefusal {
            reason: "unregistered kind",
            message: NOT_HERE,
        })
    }

    fn interpret(
        &self,
        _settings: &ConnectionSettings,
        _headers: &dyn DeliveryHeaders,
        _body: &serde_json::Value,
    ) -> Result<Delivery, String> {
        Err(NOT_HERE.into())
    }
}

impl TicketSystemModule for Unregistered {
    fn authorization(
        &self,
        _settings: &ConnectionSettings,
        _secrets: &ConnectionSecrets,
    ) -> Result<reqwest::header::HeaderValue, TicketSystemError> {
        Err(TicketSystemError::Unexpected(NOT_HERE.into()))
    }

    /// Never reached: [`Unregistered::authorization`] refuses first.
    fn client(
        &self,
        _http: TicketHttp,
        _settings: &ConnectionSettings,
        _secrets: &ConnectionSecrets,
        _options: &ClientOptions,
    ) -> Arc<dyn TicketSystem> {
        Arc::new(NoClient)
    }
}

/// The client of a kind without a plug-in: every read refuses.
struct NoClient;

#[async_trait::async_trait]
impl TicketSystem for NoClient {
    async fn verify(&self) -> Result<crate::domain::connection::Verification, TicketSystemError> {
        Err(TicketSystemError::Unexpected(NOT_HERE.into()))
    }

    async fn get_ticket(
        &self,
        _key: &str,
    ) -> Result<Option<crate::domain::connection::Ticket>, TicketSystemError> {
        Err(TicketSystemError::Unexpected(NOT_HERE.into()))
    }

    async fn find_person(
        &self,
        _email: &str,
    ) -> Result<crate::domain::connection::PersonLookup, TicketSystemError> {
        Err(TicketSystemError::Unexpected(NOT_HERE.into()))
    }

    async fn open_tickets_for(
        &self,
        _person: &crate::domain::connection::Person,
    ) -> Result<Vec<crate::domain::connection::TicketSummary>, TicketSystemError> {
        Err(TicketSystemError::Unexpected(NOT_HERE.into()))
    }
}
