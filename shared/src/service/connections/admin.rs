//! The admin use cases (DESIGN §6): list, show, create, change (credentials rotate here), verify and delete
//! connections. Everything is validated before anything is written; what a field means for one kind of ticket
//! system is asked of that system's rules ([`TicketSystemKind`]).
//!
//! A connection's settings are versioned as resources are: `get_tagged` gives the entity tag, and a change or a
//! deletion made under a [`Precondition`] is refused with [`ConnectionWriteError::VersionConflict`] when the
//! settings moved since the client read them. Without one, a change applies to whatever is stored, as it did
//! before versions existed.

use super::*;
use crate::domain::{EndReason, Grant, GrantStatus};
use crate::ports::GrantFilter;
use crate::ports::VersionedConnection;
use crate::service::{EntityTag, Precondition, Ticketbound};

/// Why a change or deletion of a connection was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionWriteError {
    /// The request's precondition does not hold: the settings changed (or the connection was deleted) since the
    /// client read them. `current` is the connection now stored, with its tag, if any.
    #[error("the connection changed since it was read")]
    VersionConflict {
        current: Option<Box<(ConnectionShown, EntityTag)>>,
    },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for ConnectionWriteError {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

/// The entity tag of a connection: its settings (never a secret) at their version.
fn tag_of(stored: &VersionedConnection) -> EntityTag {
    EntityTag::of(&stored.connection.settings, stored.version)
}

impl ConnectionWriteError {
    /// A service error as it was, a conflict as a plain 412-less error for callers that sent no precondition.
    fn into_service(self) -> ServiceError {
        match self {
            Self::Service(e) => e,
            // A write without a precondition never conflicts; should it, it is a bug, not the client's.
            Self::VersionConflict { .. } => ServiceError::internal(
                "a connection write without a precondition reported a version conflict",
            ),
        }
    }
}

impl Connections {
    /// `GET /v1/connection-kinds`: what each kind of ticket system asks of an admin connecting one, as its
    /// plug-in describes it.
    pub fn kinds(
        &self,
        caller: &Caller,
    ) -> Result<Vec<crate::ports::KindDescription>, ServiceError> {
        crate::service::require_admin(caller, "manage connections")?;
        Ok(self
            .systems
            .kinds()
            .into_iter()
            .map(|kind| self.systems.kind(kind).describe())
            .collect())
    }

    /// `GET /v1/connections`.
    pub async fn list(
        &self,
        caller: &Caller,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ConnectionShown>, ServiceError> {
        let page = self.list_tagged(caller, limit, cursor).await?;
        Ok(Page {
            items: page.items.into_iter().map(|(shown, _)| shown).collect(),
            next: page.next,
        })
    }

    /// `GET /v1/connections`, each connection with the entity tag a single read of it answers (the same
    /// `tag_of`), so a client can change or delete one from the list under `If-Match`.
    pub async fn list_tagged(
        &self,
        caller: &Caller,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(ConnectionShown, EntityTag)>, ServiceError> {
        crate::service::require_admin(caller, "manage connections")?;
        let page = self.store.list_connections_versioned(limit, cursor).await?;
        let now = self.clock.now();
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|stored| {
                    let tag = tag_of(&stored);
                    (ConnectionShown::of(stored.connection, now), tag)
                })
                .collect(),
            next: page.next,
        })
    }

    /// `GET /v1/connections/{id}`.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<ConnectionShown, ServiceError> {
        Ok(self.get_tagged(caller, id).await?.0)
    }

    /// `GET /v1/connections/{id}` with the connection's entity tag (`ETag`).
    pub async fn get_tagged(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(ConnectionShown, EntityTag), ServiceError> {
        crate::service::require_admin(caller, "manage connections")?;
        let stored = self
            .load_versioned(id)
            .await?
            .ok_or_else(|| connection_not_found(id))?;
        let tag = tag_of(&stored);
        Ok((
            ConnectionShown::of(stored.connection, self.clock.now()),
            tag,
        ))
    }

    /// The connection and its version; `None` when there is none (or `id` could not name one).
    async fn load_versioned(&self, id: &str) -> Result<Option<VersionedConnection>, ServiceError> {
        if !is_slug(id) {
            return Ok(None);
        }
        Ok(self.store.get_connection_versioned(id).await?)
    }

    /// A refusal naming what is stored now, for the client to make its change again on top of it.
    async fn conflict(&self, id: &str) -> ConnectionWriteError {
        match self.load_versioned(id).await {
            Ok(stored) => ConnectionWriteError::VersionConflict {
                current: stored.map(|s| {
                    let tag = tag_of(&s);
                    Box::new((ConnectionShown::of(s.connection, self.clock.now()), tag))
                }),
            },
            Err(e) => e.into(),
        }
    }

    /// `POST /v1/connections` with the new connection's entity tag.
    pub async fn create_tagged(
        &self,
        caller: &Caller,
        input: ConnectionChanges,
    ) -> Result<(ConnectionShown, EntityTag), ServiceError> {
        let shown = self.create(caller, input).await?;
        // A connection is created at version 1.
        let tag = EntityTag::of(&shown.connection.settings, 1);
        Ok((shown, tag))
    }

    /// `POST /v1/connections`: validates everything before writing anything; the generated webhook secret is in
    /// the answer, and only there.
    pub async fn create(
        &self,
        caller: &Caller,
        input: ConnectionChanges,
    ) -> Result<ConnectionShown, ServiceError> {
        crate::service::require_admin(caller, "manage connections")?;
        let id = input.id.clone().unwrap_or_default();
        if !is_slug(&id) {
            return Err(ServiceError::unprocessable(
                "invalid_id",
                "`id` is required: 1–64 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit",
            ));
        }
        // Grants left bound to a connection deleted before deletions ended them: a new connection under the
        // same id would adopt them, and its webhooks end them.
        if let Some(orphan) = self.open_grant_bound_to(&id).await? {
            return Err(ServiceError::conflict(
                "connection_id_in_use",
                format!(
                    "grant {} ({}) is still bound to a ticket of a deleted connection `{id}`; end it first (POST /v1/grants/{}/revoke), or choose another id",
                    orphan.id,
                    orphan.status.as_str(),
                    orphan.id
                ),
            ));
        }
        let kind = input.kind.ok_or_else(|| {
            let names: Vec<&str> = self.systems.kinds().iter().map(|k| k.as_str()).collect();
            ServiceError::unprocessable(
                "missing_kind",
                format!("`kind` is required: one of {}", names.join(", ")),
            )
        })?;
        if input.add_webhook_secret.is_some()
            || input.new_webhook_secret
            || input.retire_old_webhook_secrets
        {
            return Err(ServiceError::unprocessable(
                "field_not_applicable",
                "`add_webhook_secret`, `new_webhook_secret` and `retire_old_webhook_secrets` rotate the secrets of an existing connection (PATCH); give `webhook_secret` or let one be generated",
            ));
        }
        let system = self.systems.kind(kind);
        check_choices(system, &input.credentials)?;
        let base_url = resolve_base_url(system, input.base_url.as_deref(), &input.credentials)?
            .or_else(|| system.default_base_url().map(str::to_owned))
            .ok_or_else(|| {
                ServiceError::unprocessable(
                    "missing_base_url",
                    format!("{} is required", system.base_url_fields()),
                )
            })?;
        let checked = system
            .new_credentials(&without_host(system, &input.credentials))
            .map_err(settings_error)?;
        let (credentials, fields) = (checked.credentials, checked.fields);
        let closed_statuses = match input.closed_statuses {
            Some(values) => parse_closed_statuses(system, &values)?,
            None => system.default_closed_statuses(),
        };
        let audit = writes::check_audit(system, input.audit.clone().flatten())?;
        let people = merge_people(BTreeMap::new(), input.people.as_ref())?;
        let (webhook_secret, generated) = match input.webhook_secret {
            Some(s) => (check_webhook_secret(s)?, None),
            None => {
                let s = Secret::new(new_secret());
                (s.clone(), Some(s))
            }
        };
        let now = self.clock.now();
        let connection = Connection {
            settings: ConnectionSettings {
                id: id.clone(),
                kind,
                base_url,
                auth_method: credentials.method(),
                closed_statuses,
                webhook_secrets_active: 1,
                created_at: now,
                updated_at: now,
                audit,
                people,
                fields,
            },
            auth: AuthState::new(),
            webhook: WebhookActivity::default(),
        };
        let secrets = ConnectionSecrets {
            credentials,
            webhook_secrets: vec![webhook_secret],
        };
        // The settings first: their conditional insert is what refuses a taken id, before any secret is written.
        self.store
            .insert_connection(&connection)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => ServiceError::conflict(
                    "connection_exists",
                    format!("there is already a connection `{id}`; change it with PATCH"),
                ),
                other => other.into(),
            })?;
        if let Err(e) = self.secrets.put(&id, &secrets).await {
            // Undo, so a failed create leaves nothing behind.
            if let Err(undo) = self.store.delete_connection(&id).await {
                tracing::error!(connection = %id, error = %undo, "could not undo a half-created connection");
            }
            return Err(secret_store_error(e));
        }
        tracing::info!(connection = %id, kind = kind.as_str(), admin = %caller.email, "connection created");
        Ok(ConnectionShown::of(connection, self.clock.now()).revealing(generated))
    }

    /// `PATCH /v1/connections/{id}` without a precondition: the change applies to whatever is stored.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        input: ConnectionChanges,
    ) -> Result<ConnectionShown, ServiceError> {
        self.update_if(caller, id, input, &Precondition::None)
            .await
            .map(|(shown, _)| shown)
            .map_err(ConnectionWriteError::into_service)
    }

    /// `PATCH /v1/connections/{id}`: changes the given fields (credentials rotate here), validating all of them
    /// before writing anything, if `precondition` holds of the stored settings; the answer carries the new tag.
    /// The status is left as it is until the next call or `verify`.
    ///
    /// The settings are written conditionally on the version read. Secrets are written first (a stored
    /// connection never names a secret it lacks); when the settings write then loses to another admin's, the
    /// secrets it replaced are put back and the client is told of the conflict. Without a precondition a lost
    /// race is written over, as before versions existed.
    pub async fn update_if(
        &self,
        caller: &Caller,
        id: &str,
        input: ConnectionChanges,
        precondition: &Precondition,
    ) -> Result<(ConnectionShown, EntityTag), ConnectionWriteError> {
        crate::service::require_admin(caller, "manage connections")?;
        let stored = self.load_versioned(id).await?;
        if !precondition.holds_for(stored.as_ref().map(tag_of).as_ref()) {
            return Err(self.conflict(id).await);
        }
        let Some(VersionedConnection {
            mut connection,
            version,
        }) = stored
        else {
            return Err(connection_not_found(id).into());
        };
        let kind = connection.settings.kind;
        if input.id.as_deref().is_some_and(|body_id| body_id != id) {
            return Err(ServiceError::unprocessable(
                "id_mismatch",
                "the `id` in the body differs from the one in the path; ids cannot change",
            )
            .into());
        }
        if input.kind.is_some_and(|k| k != kind) {
            return Err(ServiceError::unprocessable(
                "kind_mismatch",
                format!(
                    "connection `{id}` is {}; the kind cannot change (create a new connection)",
                    kind.as_str()
                ),
            )
            .into());
        }
        let system = self.systems.kind(kind);
        check_choices(system, &input.credentials)?;
        let mut settings = connection.settings.clone();
        if let Some(base_url) =
            resolve_base_url(system, input.base_url.as_deref(), &input.credentials)?
        {
            if base_url != settings.base_url {
                // Another site: what was learnt about this one does not hold there.
                for field in system.learned_fields() {
                    settings.fields.remove(*field);
                }
            }
            settings.base_url = base_url;
        }
        if let Some(values) = &input.closed_statuses {
            settings.closed_statuses = parse_closed_statuses(system, values)?;
        }
        if let Some(audit) = &input.audit {
            settings.audit = writes::check_audit(system, audit.clone())?;
        }
        settings.people = merge_people(settings.people, input.people.as_ref())?;
        let current = self.secrets.get(id).await.map_err(secret_store_error)?;
        let checked = system
            .changed_credentials(
                &settings,
                current.as_ref().map(|c| &c.credentials),
                &without_host(system, &input.credentials),
            )
            .map_err(settings_error)?;
        let credentials = checked.credentials;
        let mut webhook_secrets = current
            .as_ref()
            .map(|c| c.webhook_secrets.clone())
            .unwrap_or_default();
        let mut generated = None;
        if let Some(s) = input.webhook_secret.clone().filter(|s| !s.is_mask()) {
            webhook_secrets = vec![check_webhook_secret(s)?];
        }
        if let Some(s) = input.add_webhook_secret.clone() {
            webhook_secrets.push(check_webhook_secret(s)?);
        }
        if input.new_webhook_secret {
            let s = Secret::new(new_secret());
            webhook_secrets.push(s.clone());
            generated = Some(s);
        }
        if input.retire_old_webhook_secrets && webhook_secrets.len() > 1 {
            webhook_secrets.drain(..webhook_secrets.len() - 1);
        }
        if webhook_secrets.len() > MAX_WEBHOOK_SECRETS {
            return Err(ServiceError::unprocessable(
                "too_many_webhook_secrets",
                format!(
                    "at most {MAX_WEBHOOK_SECRETS} webhook secrets may be active; retire old ones with `retire_old_webhook_secrets: true`"
                ),
            ).into());
        }
        if webhook_secrets.is_empty() {
            // Only reachable when the secret entry was lost: a connection always keeps one.
            return Err(ServiceError::unprocessable(
                "missing_webhook_secret",
                "this connection has no webhook secret; give `webhook_secret` or `new_webhook_secret: true`",
            ).into());
        }
        settings.auth_method = credentials.method();
        settings.fields = checked.fields;
        settings.webhook_secrets_active = webhook_secrets.len();
        settings.updated_at = self.clock.now();
        let secrets = ConnectionSecrets {
            credentials,
            webhook_secrets,
        };
        let secrets_changed = current.as_ref() != Some(&secrets);
        if secrets_changed {
            self.secrets
                .put(id, &secrets)
                .await
                .map_err(secret_store_error)?;
        }
        let version = match self.store.update_settings_if(&settings, version).await {
            Ok(version) => version,
            Err(StoreError::Conflict) if *precondition == Precondition::None => {
                // Another write landed since the read: this one goes over it, as before versions existed.
                if !self.store.update_settings(&settings).await? {
                    return Err(connection_not_found(id).into());
                }
                match self.load_versioned(id).await? {
                    Some(now) => now.version,
                    None => return Err(connection_not_found(id).into()),
                }
            }
            Err(StoreError::Conflict) => {
                if secrets_changed
                    && let Some(previous) = &current
                    && let Err(e) = self.secrets.put(id, previous).await
                {
                    tracing::error!(connection = %id, error = %e, "could not put back the secrets of a change that lost to another");
                }
                return Err(self.conflict(id).await);
            }
            Err(e) => return Err(e.into()),
        };
        connection.settings = settings;
        let tag = EntityTag::of(&connection.settings, version);
        tracing::info!(connection = %id, admin = %caller.email, version, "connection changed");
        Ok((
            ConnectionShown::of(connection, self.clock.now()).revealing(generated),
            tag,
        ))
    }

    /// Deletes the connection, then its secrets. With `version` (the caller sent `If-Match`) the delete is one
    /// conditional write on the settings' version, so an edit that landed since the version was read refuses
    /// it ([`ConnectionWriteError::VersionConflict`]) and nothing is deleted, secrets included: they go only
    /// once their connection is gone. `Ok(false)` when there was no connection to delete (without `version`).
    /// The grants bound to it are the caller's ([`Ticketbound::delete_connection`]).
    async fn delete_stored(
        &self,
        id: &str,
        version: Option<u64>,
    ) -> Result<bool, ConnectionWriteError> {
        let deleted = match version {
            Some(version) => match self.store.delete_connection_if(id, version).await {
                Ok(()) => true,
                Err(StoreError::Conflict) => return Err(self.conflict(id).await),
                Err(e) => return Err(e.into()),
            },
            None => self.store.delete_connection(id).await?,
        };
        // A connection nobody can read any more cannot use its credentials, so a secret store failing here
        // leaves unused secrets, not a working connection: the deletion stands, and the leftover is logged for
        // the operator (a connection created again under this id writes its own secrets over them).
        if let Err(e) = self.secrets.delete(id).await {
            tracing::error!(connection = %id, error = %e, "the connection is deleted but its secrets could not be; delete them from the secret store");
        }
        Ok(deleted)
    }

    /// `POST /v1/connections/{id}/verify`: checks the credentials now. The answer is the connection with what
    /// the credentials saw; refused credentials answer 200 with `verified: false` and the new status, an
    /// unreachable ticket system 503.
    pub async fn verify(&self, caller: &Caller, id: &str) -> Result<ConnectionShown, ServiceError> {
        crate::service::require_admin(caller, "manage connections")?;
        let mut session = self.open_for_api(id).await?;
        let result = session.system.verify().await;
        let result = self.observe(&mut session.connection, result, true).await;
        let mut shown = ConnectionShown::of(session.connection.clone(), self.clock.now());
        match result {
            Ok(seen) => {
                if !seen.learned.is_empty() {
                    self.remember_learned(&session.connection.settings, &seen.learned)
                        .await;
                    if let Ok(fresh) = self.load(id).await {
                        shown = ConnectionShown::of(fresh, self.clock.now());
                    }
                }
                shown.verification = Some(Verification {
                    verified: true,
                    account: Some(seen.account),
                    projects: seen.projects,
                    api: seen.api,
                });
                tracing::info!(connection = %id, admin = %caller.email, "connection verified");
                Ok(shown)
            }
            Err(TicketSystemError::Unauthorized { .. }) => {
                shown.verification = Some(Verification {
                    verified: false,
                    account: None,
                    projects: None,
                    api: None,
                });
                Ok(shown)
            }
            Err(e) => Err(system_error(id, e)),
        }
    }

    /// Keeps what `verify` learnt about the site (Jira Cloud: the token type that worked, the site's cloud id),
    /// so later calls go straight where it works. Re-reads the settings first and writes only a change, leaving
    /// an admin's change made meanwhile alone unless it moved the site.
    async fn remember_learned(&self, seen_with: &ConnectionSettings, learned: &KindFields) {
        let id = &seen_with.id;
        let Ok(Some(mut current)) = self.store.get_connection(id).await else {
            return;
        };
        let s = &mut current.settings;
        if s.base_url != seen_with.base_url
            || learned
                .iter()
                .all(|(field, value)| s.fields.get(field) == Some(value))
        {
            return;
        }
        for (field, value) in learned {
            s.fields.insert(field.clone(), value.clone());
        }
        if let Err(e) = self.store.update_settings(s).await {
            tracing::warn!(connection = %id, error = %e, "could not record what verify learnt");
        } else {
            tracing::info!(connection = %id, "verify learnt how to reach the site");
        }
    }

    pub(super) async fn open_grant_bound_to(
        &self,
        connection: &str,
    ) -> Result<Option<crate::domain::Grant>, ServiceError> {
        crate::service::first_open_grant(&*self.grants, |g| {
            g.ticket
                .as_ref()
                .is_some_and(|t| t.connection == connection)
        })
        .await
    }

    /// Every pending and active grant bound to a ticket of `connection`, pending ones first.
    async fn open_grants_bound_to(&self, connection: &str) -> Result<Vec<Grant>, ServiceError> {
        let mut bound = Vec::new();
        for status in [GrantStatus::Pending, GrantStatus::Active] {
            let filter = GrantFilter {
                status: Some(status),
                ..GrantFilter::default()
            };
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .grants
                    .list_grants(&filter, 100, cursor.as_deref())
                    .await?;
                bound.extend(page.items.into_iter().filter(|g| {
                    g.ticket
                        .as_ref()
                        .is_some_and(|t| t.connection == connection)
                }));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(bound)
    }
}

/// The most grant ids a refusal lists; it counts the rest.
const LISTED_GRANTS: usize = 20;

/// "2 active (A, B) and 1 pending (C)" for messages, at most [`LISTED_GRANTS`] ids in all.
fn describe_bound(grants: &[Grant]) -> String {
    let mut listed = 0;
    let mut parts = Vec::new();
    for status in [GrantStatus::Active, GrantStatus::Pending] {
        let ids: Vec<&str> = grants
            .iter()
            .filter(|g| g.status == status)
            .map(|g| g.id.as_str())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let shown: Vec<&str> = ids
            .iter()
            .copied()
            .take(LISTED_GRANTS.saturating_sub(listed))
            .collect();
        listed += shown.len();
        let more = match ids.len() - shown.len() {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        parts.push(format!(
            "{} {} ({}{more})",
            ids.len(),
            status.as_str(),
            shown.join(", ")
        ));
    }
    parts.join(" and ")
}

/// How many times a deletion ends the grants it finds bound before giving up on grants still being bound.
const END_ROUNDS: usize = 3;

impl Ticketbound {
    /// `DELETE /v1/connections/{id}`.
    ///
    /// Refused with 409 `connection_in_use`, naming them, while pending or active grants are bound to the
    /// connection's tickets: without the connection no webhook and no reconciliation could end them, and an
    /// `indefinite` one would never end. With `end_grants` they end first, as `connection_removed`, by the
    /// admin: an active grant's access is removed as for any ended grant, a pending request is cancelled.
    ///
    /// A connection later created under the same id must not adopt grants of this one (its webhooks would end
    /// them). So the connection is deleted only once no grant is left bound (ended grants are never moved by a
    /// delivery), and grants a request bound in the moment before the deletion are looked for once more after
    /// it and ended too.
    pub async fn delete_connection(
        &self,
        caller: &Caller,
        id: &str,
        end_grants: bool,
    ) -> Result<(), ServiceError> {
        self.delete_connection_if(caller, id, end_grants, &Precondition::None)
            .await
            .map_err(ConnectionWriteError::into_service)
    }

    /// `DELETE /v1/connections/{id}` if `precondition` holds of the stored settings: checked before anything
    /// is ended, and again by the delete itself, a write conditional on the version read (an admin's change
    /// made while its grants were ending, or in the moment before the delete, refuses the deletion and deletes
    /// nothing; grants already ended stay ended, as they would for a `409`).
    pub async fn delete_connection_if(
        &self,
        caller: &Caller,
        id: &str,
        end_grants: bool,
        precondition: &Precondition,
    ) -> Result<(), ConnectionWriteError> {
        crate::service::require_admin(caller, "manage connections")?;
        let stored = self.connections.load_versioned(id).await?;
        let read = stored.as_ref().map(tag_of);
        if !precondition.holds_for(read.as_ref()) {
            return Err(self.connections.conflict(id).await);
        }
        let Some(stored) = stored else {
            return Err(connection_not_found(id).into());
        };
        // `If-Match: *` asks only that the connection exists, which the delete itself tells.
        let version = matches!(precondition, Precondition::Matches(_)).then_some(stored.version);
        self.delete_bound_and_connection(caller, id, end_grants, precondition, version)
            .await
    }

    async fn delete_bound_and_connection(
        &self,
        caller: &Caller,
        id: &str,
        end_grants: bool,
        precondition: &Precondition,
        version: Option<u64>,
    ) -> Result<(), ConnectionWriteError> {
        let mut ended = 0;
        let mut bound = self.connections.open_grants_bound_to(id).await?;
        if !bound.is_empty() && !end_grants {
            return Err(ConnectionWriteError::Service(ServiceError::conflict(
                "connection_in_use",
                format!(
                    "{} bound to tickets of `{id}`: {}. Without the connection nothing would end them; end them first, or delete with ?end_grants=true to end them now (as `connection_removed`)",
                    match bound.len() {
                        1 => "1 grant is".to_owned(),
                        n => format!("{n} grants are"),
                    },
                    describe_bound(&bound)
                ),
            )));
        }
        for _ in 0..END_ROUNDS {
            if bound.is_empty() {
                break;
            }
            ended += self.end_for_removed_connection(caller, &bound).await?;
            bound = self.connections.open_grants_bound_to(id).await?;
        }
        if !bound.is_empty() {
            return Err(ConnectionWriteError::Service(ServiceError::conflict(
                "connection_in_use",
                format!(
                    "grants kept being bound to tickets of `{id}` while it was being deleted ({}); try again",
                    describe_bound(&bound)
                ),
            )));
        }
        let deleted = self.connections.delete_stored(id, version).await?;
        if !deleted && *precondition == Precondition::Exists {
            // Deleted by somebody else since it was read: `If-Match: *` no longer holds.
            return Err(self.connections.conflict(id).await);
        }
        // A request whose binding was checked just before the deletion may have stored its grant since.
        let late = self.connections.open_grants_bound_to(id).await?;
        if !late.is_empty() {
            tracing::warn!(connection = %id, grants = late.len(), "grants bound while the connection was deleted are ended");
            ended += self.end_for_removed_connection(caller, &late).await?;
        }
        tracing::info!(connection = %id, admin = %caller.email, ended, "connection deleted");
        Ok(())
    }

    /// Ends `grants` as `connection_removed` by `caller`; how many this call ended (others were closed
    /// meanwhile).
    async fn end_for_removed_connection(
        &self,
        caller: &Caller,
        grants: &[Grant],
    ) -> Result<usize, ServiceError> {
        let mut ended = 0;
        for grant in grants {
            let outcome = self
                .end_grant(&grant.id, EndReason::ConnectionRemoved, Some(&caller.email))
                .await?;
            if matches!(outcome, crate::service::EndOutcome::Ended(_)) {
                ended += 1;
            }
        }
        Ok(ended)
    }
}

pub(super) fn not_applicable(field: &str, kind: ConnectionKind) -> ServiceError {
    unprocessable(
        "field_not_applicable",
        format!("`{field}` does not apply to a {} connection", kind.as_str()),
    )
}

/// A value outside the choices the kind describes for one of its fields (Jira Cloud's `token_type`) is a body
/// that is not the expected JSON, as an unknown enum value is: 400 `malformed_request`. `null` leaves an optional
/// choice to the plug-in (Jira Cloud: detect the token type).
pub(super) fn check_choices(
    system: &dyn TicketSystemKind,
    given: &KindFields,
) -> Result<(), ServiceError> {
    for field in system.describe().fields {
        if field.choices.is_empty() {
            continue;
        }
        match given.get(field.name) {
            None | Some(serde_json::Value::Null) => {}
            Some(value) if value.as_str().is_some_and(|v| field.choices.contains(&v)) => {}
            Some(_) => {
                return Err(ServiceError::bad_request(
                    "malformed_request",
                    format!(
                        "the body is not the expected JSON: `{}` is one of {}",
                        field.name,
                        field.choices.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The kind's fields without its host-name field (which [`resolve_base_url`] reads): what its plug-in parses.
fn without_host(system: &dyn TicketSystemKind, given: &KindFields) -> KindFields {
    let mut fields = given.clone();
    if let Some(host) = system.host_form() {
        fields.remove(host.field);
    }
    fields
}

/// A ticket system's refusal of the settings given: a 422 with its code.
pub(super) fn settings_error(e: SettingsError) -> ServiceError {
    unprocessable(e.code, e.message)
}

/// The base URL from `base_url` or the kind's host-name field among its `given` fields (Jira Cloud's `site`,
/// Freshservice's `domain`); `None` when neither is given. It must pass the outbound URL policy and carry no
/// query or fragment. Every field the kind does not take is refused first, another kind's host-name field
/// included, so no base URL is judged from a field that would be refused anyway.
pub(super) fn resolve_base_url(
    system: &dyn TicketSystemKind,
    base_url: Option<&str>,
    given: &KindFields,
) -> Result<Option<String>, ServiceError> {
    let host_field = system.host_form().map(|h| h.field);
    if let Some(field) = given.keys().find(|field| {
        Some(field.as_str()) != host_field && !system.credential_fields().contains(&field.as_str())
    }) {
        return Err(not_applicable(field, system.kind()));
    }
    let host_form = host_field
        .and_then(|field| given.get(field))
        .and_then(serde_json::Value::as_str);
    if base_url.is_some() && host_form.is_some() {
        return Err(unprocessable(
            "ambiguous_base_url",
            "give either `base_url` or the site/domain, not both",
        ));
    }
    let raw = match (base_url, host_form) {
        (Some(url), _) => url.trim().to_owned(),
        (None, Some(host)) => {
            let host = host.trim().to_ascii_lowercase();
            let valid = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && !host.starts_with(['-', '.'])
                && !host.ends_with(['-', '.']);
            if !valid {
                return Err(unprocessable(
                    "invalid_base_url",
                    format!(
                        "`{host}` is not a host name such as acme.atlassian.net or acme.freshservice.com"
                    ),
                ));
            }
            // Only a kind with a host form gets here (the checks above refuse the field otherwise).
            let suffix = system.host_form().map_or("", |h| h.suffix);
            if host.contains('.') {
                format!("https://{host}")
            } else {
                format!("https://{host}{suffix}")
            }
        }
        (None, None) => return Ok(None),
    };
    let url =
        super::super::resources::normalized_outbound_url(&raw, "the base URL", "invalid_base_url")?;
    Ok(Some(url.as_str().trim_end_matches('/').to_owned()))
}

pub(super) fn check_webhook_secret(secret: Secret) -> Result<Secret, ServiceError> {
    let value = secret.expose();
    if value.len() < MIN_WEBHOOK_SECRET
        || value.len() > 512
        || secret.is_mask()
        || !value.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(unprocessable(
            "invalid_webhook_secret",
            format!(
                "a webhook secret is {MIN_WEBHOOK_SECRET} to 512 printable ASCII characters without spaces (or leave it out to have one generated)"
            ),
        ));
    }
    Ok(secret)
}

/// `closed_statuses` as given: at most [`MAX_CLOSED_STATUSES`], in the form the ticket system writes them.
pub(super) fn parse_closed_statuses(
    system: &dyn TicketSystemKind,
    values: &[serde_json::Value],
) -> Result<ClosedStatuses, ServiceError> {
    if values.len() > MAX_CLOSED_STATUSES {
        return Err(unprocessable(
            "invalid_closed_statuses",
            format!("at most {MAX_CLOSED_STATUSES} closed statuses"),
        ));
    }
    system.closed_statuses(values).map_err(settings_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::freshservice::Freshservice;
    use crate::adapters::jira::{JiraCloud, JiraDataCenter};

    const CLOUD: &dyn TicketSystemKind = &JiraCloud;
    const DATA_CENTER: &dyn TicketSystemKind = &JiraDataCenter;
    const FRESHSERVICE: &dyn TicketSystemKind = &Freshservice;

    #[test]
    fn a_refusal_names_bound_grants_by_status_and_counts_past_the_limit() {
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        let grant = |n: usize| {
            Grant::request(
                format!("g{n:02}"),
                "alice@example.com".into(),
                "prod-db".into(),
                "r".into(),
                crate::domain::GrantDuration::Indefinite,
                None,
                now,
            )
        };
        let mut grants: Vec<Grant> = (0..22).map(grant).collect();
        grants[0] = grants[0].approve("bob@example.com", now).unwrap();
        let text = describe_bound(&grants);
        assert!(
            text.starts_with("1 active (g00) and 21 pending (g01, g02,"),
            "{text}"
        );
        assert!(text.ends_with("g19 and 2 more)"), "{text}");
        assert!(!text.contains("g20"), "{text}");
    }

    fn given(fields: serde_json::Value) -> KindFields {
        fields.as_object().cloned().unwrap()
    }

    #[test]
    fn a_site_or_domain_becomes_an_https_base_url() {
        let cloud =
            resolve_base_url(CLOUD, None, &given(serde_json::json!({"site": "acme"}))).unwrap();
        assert_eq!(cloud.as_deref(), Some("https://acme.atlassian.net"));
        let fs = resolve_base_url(
            FRESHSERVICE,
            None,
            &given(serde_json::json!({"domain": "Acme.freshservice.com"})),
        )
        .unwrap();
        assert_eq!(fs.as_deref(), Some("https://acme.freshservice.com"));
        let dc = resolve_base_url(
            DATA_CENTER,
            Some("https://jira.corp/jira/"),
            &KindFields::new(),
        )
        .unwrap();
        assert_eq!(dc.as_deref(), Some("https://jira.corp/jira"));
        let host_taken = without_host(
            CLOUD,
            &given(serde_json::json!({"site": "acme", "email": "a@b.c"})),
        );
        assert_eq!(host_taken, given(serde_json::json!({"email": "a@b.c"})));
    }

    #[test]
    fn unsafe_or_odd_base_urls_are_refused() {
        for (kind, url, fields) in [
            (
                CLOUD,
                Some("http://acme.atlassian.net"),
                serde_json::json!({}),
            ),
            (
                DATA_CENTER,
                Some("https://169.254.169.254/"),
                serde_json::json!({}),
            ),
            (
                DATA_CENTER,
                Some("https://jira.corp/?x=1"),
                serde_json::json!({}),
            ),
            (
                FRESHSERVICE,
                None,
                serde_json::json!({"domain": "acme.freshservice.com/x"}),
            ),
            (DATA_CENTER, None, serde_json::json!({"site": "acme"})),
            (FRESHSERVICE, None, serde_json::json!({"site": "acme"})),
            (
                CLOUD,
                Some("https://a.atlassian.net"),
                serde_json::json!({"site": "a"}),
            ),
        ] {
            assert!(
                resolve_base_url(kind, url, &given(fields.clone())).is_err(),
                "{url:?} {fields}"
            );
        }
    }
}
