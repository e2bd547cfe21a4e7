//! Webhook support (DESIGN §9): the connection and active webhook secrets a verified-delivery extractor checks
//! against ([`WebhookSecrets`] compares a shared secret or an `X-Hub-Signature` in constant time), and the
//! ticket's state as the ticket system has it now, for deliveries that only name the ticket.

use super::*;

impl Connections {
    /// For the webhook handlers: the connection's settings and active webhook secrets; `None` when there is no
    /// such connection (answer 404). An error means the stores could not be read (answer 5xx so the sender
    /// retries).
    pub async fn webhook_secrets(
        &self,
        id: &str,
    ) -> Result<Option<(ConnectionSettings, WebhookSecrets)>, ServiceError> {
        if !is_slug(id) {
            return Ok(None);
        }
        let Some(connection) = self.store.get_connection(id).await? else {
            return Ok(None);
        };
        let secrets = self.secrets.get(id).await.map_err(secret_store_error)?;
        let active = secrets.map(|s| s.webhook_secrets).unwrap_or_default();
        Ok(Some((connection.settings, WebhookSecrets(active))))
    }

    /// For the generic webhook route: the source whose deliveries `/webhooks/{name}/…` receives, where `name`
    /// is a connection kind (`jira_cloud`) or a source's own name (`jira`, `freshservice`); `None` for anything
    /// else.
    pub fn webhook_source_named(&self, name: &str) -> Option<WebhookSource> {
        self.systems
            .kinds()
            .into_iter()
            .map(|kind| self.systems.kind(kind).webhook_source())
            .find(|source| source.path_name() == name)
            .or_else(|| {
                self.systems
                    .kind_named(name)
                    .map(|kind| self.systems.kind(kind).webhook_source())
            })
    }

    /// The names of every kind of this build.
    pub fn kind_names(&self) -> Vec<&'static str> {
        self.systems.kinds().iter().map(|k| k.as_str()).collect()
    }

    /// Every field some kind of this build declares as its own: its host-name field
    /// ([`TicketSystemKind::host_form`]) and its [`TicketSystemKind::credential_fields`].
    pub fn kind_field_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .systems
            .kinds()
            .into_iter()
            .flat_map(|kind| {
                let system = self.systems.kind(kind);
                let host = system.host_form().map(|h| h.field);
                host.into_iter()
                    .chain(system.credential_fields().iter().copied())
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The kind named `name` (a `{kind}` of a request body or of the generic webhook route), if this build has
    /// it.
    pub fn kind_named(&self, name: &str) -> Option<ConnectionKind> {
        self.systems.kind_named(name)
    }

    /// For the verified-delivery extractor: how deliveries of a kind are authenticated and read.
    pub fn delivery_rules(&self, kind: ConnectionKind) -> &'static dyn crate::ports::DeliveryRules {
        self.systems.kind(kind).deliveries()
    }

    /// For the verified-delivery extractors: the connection and its active webhook secrets when it exists and
    /// its deliveries arrive from `source`; `None` answers 404.
    pub async fn webhook_target(
        &self,
        id: &str,
        source: WebhookSource,
    ) -> Result<Option<(ConnectionSettings, WebhookSecrets)>, ServiceError> {
        Ok(self
            .webhook_secrets(id)
            .await?
            .filter(|(settings, _)| self.systems.kind(settings.kind).webhook_source() == source))
    }

    /// For the webhook handlers: the ticket as the ticket system has it now (`None`: gone).
    pub async fn read_ticket(
        &self,
        ticket: &TicketRef,
    ) -> Result<Option<Ticket>, TicketCheckError> {
        let mut session = self.open_for_check(&ticket.connection).await?;
        let read = session.system.get_ticket(&ticket.key).await;
        self.observe(&mut session.connection, read, false)
            .await
            .map_err(|e| unavailable_check(&ticket.connection, e))
    }

    /// For the webhook handlers: whether the ticket is open, closed or deleted (DESIGN §1 rule 9), confirmed with
    /// the ticket system. An unreachable ticket system is an error, never a guess.
    pub async fn ticket_state(&self, ticket: &TicketRef) -> Result<TicketState, TicketCheckError> {
        Ok(TicketState::of(self.read_ticket(ticket).await?.as_ref()))
    }
}
