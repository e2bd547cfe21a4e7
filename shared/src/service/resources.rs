//! The resource catalog (DESIGN §7): anyone reads it, admins change it. A resource may carry its own approval
//! policy, validated here: every field of it refused with a 422 naming the field.
//!
//! A `webhook` provisioner's signing secret is kept in the secret store (the connections' one), never with the
//! resource: anyone who could read the table or the local database file could otherwise sign `grant` calls
//! to the operator's provisioner. Saving writes the secret first and the resource (without it) second, so a
//! stored resource never names a secret the store lacks; [`SecretLoadingProvisioners`] loads it when a call is
//! signed; [`Ticketbound::move_provisioner_secrets`] moves secrets out of resources stored before, at start.

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;

use super::{ServiceError, Ticketbound};
use crate::domain::identity::{Email, normalize_email};
use crate::domain::ids::Slug;
use crate::domain::resource::{ApprovalPolicy, Approvers, AutoApprove, MAX_APPROVALS_REQUIRED};
use crate::domain::url_policy::check_outbound_url;
use crate::domain::{Caller, Grant, IsoDuration, Provisioner, Resource};
use crate::ports::{
    Page, ProvisionAction, ProvisionError, Provisioners, SecretStore, SecretStoreError,
};

/// The body of `PUT /v1/resources/{id}`. Durations arrive as text so a bad one is a 422 with a clear message.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    /// Optional; when present it must equal the id in the path.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub max_duration: Option<String>,
    #[serde(default)]
    pub require_ticket: bool,
    #[serde(deserialize_with = "provisioner_input")]
    pub provisioner: Provisioner,
    /// Who may approve or deny; the approver group when absent.
    #[serde(default)]
    pub approvers: Option<ApproversInput>,
    /// Distinct approvers needed, 1 (the default) to 10.
    #[serde(default)]
    pub approvals_required: Option<i64>,
    /// The groups allowed to request; everyone authenticated when absent.
    #[serde(default)]
    pub requesters: Option<Vec<String>>,
    #[serde(default)]
    pub auto_approve: Option<AutoApproveInput>,
}

/// `approvers` as sent: groups and/or people (e-mail addresses).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproversInput {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

/// `auto_approve` as sent: `{"max_duration": "PT4H"}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApproveInput {
    pub max_duration: String,
}

/// A provisioner as sent. `{"kind": "none"}` takes no other field: an operator's `url` or `secret` beside it
/// would otherwise vanish without a word (serde lets a tagged unit variant ignore unknown fields).
fn provisioner_input<'de, D: Deserializer<'de>>(d: D) -> Result<Provisioner, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(d)?;
    if value.get("kind").and_then(serde_json::Value::as_str) == Some("none")
        && let Some(extra) = value
            .as_object()
            .and_then(|fields| fields.keys().find(|k| *k != "kind"))
    {
        return Err(D::Error::custom(format!(
            "unknown field `{extra}`: a `none` provisioner takes only `kind`"
        )));
    }
    serde_json::from_value(value).map_err(D::Error::custom)
}

/// An outbound URL an admin configures (a connection's base URL, a provisioner's URL) as it is kept: trimmed,
/// checked against the outbound URL policy, in the URL parser's normal form (lower-case scheme and host, no
/// default port, the path percent-encoded), and without a query or a fragment, which a configured URL has no
/// use for and which would otherwise be sent, or shown, as typed. `what` names the URL in messages ("the base
/// URL"); `code` is the 422's code.
pub(super) fn normalized_outbound_url(
    raw: &str,
    what: &str,
    code: &'static str,
) -> Result<url::Url, ServiceError> {
    let url = check_outbound_url(raw.trim())
        .map_err(|e| ServiceError::unprocessable(code, e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ServiceError::unprocessable(
            code,
            format!("{what} must not carry a query or a fragment"),
        ));
    }
    Ok(url)
}

/// The secret store's failure as the API answers it: 503 when retrying can help, 500 otherwise. Messages
/// never hold a secret.
fn secret_store_error(e: SecretStoreError) -> ServiceError {
    match e {
        SecretStoreError::Unavailable(m) => ServiceError::unavailable(
            "secret_store_unavailable",
            format!("the secret store could not be reached ({m}); try again"),
        ),
        SecretStoreError::Corrupt(m) | SecretStoreError::Rejected(m) => ServiceError::internal(m),
    }
}

const MIN_SECRET: usize = 16;
/// The most groups or people one list of a policy holds.
const MAX_POLICY_ENTRIES: usize = 100;
const MAX_GROUP_NAME: usize = 256;

/// A group name as identity claims carry it: groups claims are split on commas and white space, so a name
/// holding either could never match anybody.
fn group_name(field: &str, name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > MAX_GROUP_NAME
        || name
            .chars()
            .any(|c| c == ',' || c.is_whitespace() || c.is_control())
    {
        return Err(ServiceError::unprocessable(
            match field {
                "requesters" => "invalid_requesters",
                _ => "invalid_approvers",
            },
            format!(
                "`{field}`: `{name}` is not a group name (1 to {MAX_GROUP_NAME} characters, no commas or spaces)"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Sorted, without duplicates.
fn distinct(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

/// Validates a policy as sent; `max_duration` is the longest grant the resource allows.
fn checked_policy(
    input: &ResourceInput,
    max_duration: &IsoDuration,
) -> Result<ApprovalPolicy, ServiceError> {
    let approvers = match &input.approvers {
        None => None,
        Some(a) => {
            if a.groups.len() + a.users.len() == 0 {
                return Err(ServiceError::unprocessable(
                    "invalid_approvers",
                    "`approvers` lists nobody: give `groups` and/or `users`, or leave `approvers` out for the approver group",
                ));
            }
            if a.groups.len() > MAX_POLICY_ENTRIES || a.users.len() > MAX_POLICY_ENTRIES {
                return Err(ServiceError::unprocessable(
                    "invalid_approvers",
                    format!(
                        "`approvers` holds at most {MAX_POLICY_ENTRIES} groups and {MAX_POLICY_ENTRIES} users"
                    ),
                ));
            }
            let groups = a
                .groups
                .iter()
                .map(|g| group_name("approvers", g))
                .collect::<Result<Vec<_>, _>>()?;
            let users = a
                .users
                .iter()
                .map(|u| match Email::parse(u.trim()) {
                    Ok(_) => Ok(normalize_email(u)),
                    Err(_) => Err(ServiceError::unprocessable(
                        "invalid_approvers",
                        format!("`approvers.users`: `{u}` is not an e-mail address"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(Approvers {
                groups: distinct(groups),
                users: distinct(users),
            })
        }
    };
    let approvals_required = match input.approvals_required {
        None => 1,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_APPROVALS_REQUIRED).contains(n))
            .ok_or_else(|| {
                ServiceError::unprocessable(
                    "invalid_approvals_required",
                    format!("`approvals_required` is a whole number from 1 to {MAX_APPROVALS_REQUIRED}, not {n}"),
                )
            })?,
    };
    if let Some(listed) = approvers.as_ref().filter(|a| a.groups.is_empty())
        && listed.users.len() < approvals_required as usize
    {
        return Err(ServiceError::unprocessable(
            "quorum_unreachable",
            format!(
                "`approvals_required` is {approvals_required} but `approvers` lists only {} people and no group: the quorum could never be met",
                listed.users.len()
            ),
        ));
    }
    let requesters = match &input.requesters {
        None => None,
        Some(groups) if groups.is_empty() || groups.len() > MAX_POLICY_ENTRIES => {
            return Err(ServiceError::unprocessable(
                "invalid_requesters",
                format!(
                    "`requesters` lists 1 to {MAX_POLICY_ENTRIES} groups; leave it out to let everyone request"
                ),
            ));
        }
        Some(groups) => Some(distinct(
            groups
                .iter()
                .map(|g| group_name("requesters", g))
                .collect::<Result<Vec<_>, _>>()?,
        )),
    };
    let auto_approve = match &input.auto_approve {
        None => None,
        Some(rule) => {
            let limit = IsoDuration::parse(&rule.max_duration).map_err(|e| {
                ServiceError::unprocessable(
                    "invalid_auto_approve",
                    format!("`auto_approve.max_duration`: {e}"),
                )
            })?;
            if limit.seconds() > max_duration.seconds() {
                return Err(ServiceError::unprocessable(
                    "invalid_auto_approve",
                    format!(
                        "`auto_approve.max_duration` ({limit}) is longer than the {max_duration} any grant of this resource may last"
                    ),
                ));
            }
            Some(AutoApprove {
                max_duration: limit,
            })
        }
    };
    Ok(ApprovalPolicy {
        approvers,
        approvals_required,
        requesters,
        auto_approve,
    })
}

impl Ticketbound {
    pub async fn list_resources(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Resource>, ServiceError> {
        Ok(self.store.list_resources(limit, cursor).await?)
    }

    pub async fn get_resource(&self, id: &str) -> Result<Resource, ServiceError> {
        if Slug::parse(id).is_err() {
            return Err(resource_not_found(id));
        }
        self.store
            .get_resource(id)
            .await?
            .ok_or_else(|| resource_not_found(id))
    }

    /// Creates or replaces a resource. `Ok((resource, created))`.
    pub async fn put_resource(
        &self,
        caller: &Caller,
        id: &str,
        input: ResourceInput,
    ) -> Result<(Resource, bool), ServiceError> {
        super::require_admin(caller, "change resources")?;
        if Slug::parse(id).is_err() {
            return Err(ServiceError::unprocessable(
                "invalid_id",
                "a resource id is 1–64 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit",
            ));
        }
        if input.id.as_deref().is_some_and(|body_id| body_id != id) {
            return Err(ServiceError::unprocessable(
                "id_mismatch",
                "the `id` in the body differs from the one in the path",
            ));
        }
        let name = input.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ServiceError::unprocessable(
                "invalid_name",
                "`name` must be 1 to 200 characters",
            ));
        }
        if input.description.len() > 2_000 {
            return Err(ServiceError::unprocessable(
                "invalid_description",
                "`description` must be at most 2000 characters",
            ));
        }
        let max_duration = input
            .max_duration
            .as_deref()
            .map(IsoDuration::parse)
            .transpose()
            .map_err(|e| {
                ServiceError::unprocessable("invalid_duration", format!("max_duration: {e}"))
            })?;
        let policy = checked_policy(
            &input,
            max_duration.as_ref().unwrap_or(&self.settings.max_duration),
        )?;
        let existing = self.store.get_resource(id).await?;
        // The secret to write to the secret store before the resource, if any.
        let mut new_secret = None;
        let provisioner = match input.provisioner {
            Provisioner::Webhook { url, secret } => {
                let url = normalized_outbound_url(&url, "the provisioner `url`", "invalid_url")?;
                match secret {
                    Some(secret) if !secret.is_mask() => {
                        if secret.expose().len() < MIN_SECRET {
                            return Err(ServiceError::unprocessable(
                                "invalid_secret",
                                format!(
                                    "the provisioner `secret` must be at least {MIN_SECRET} characters"
                                ),
                            ));
                        }
                        new_secret = Some(secret);
                    }
                    // Read back and sent unchanged: keep the current secret, which is in the secret store
                    // (or still held by a resource stored before secrets moved out: move it now).
                    Some(_) => match existing.as_ref().map(|r| &r.provisioner) {
                        Some(Provisioner::Webhook { secret, .. }) => new_secret = secret.clone(),
                        _ => {
                            return Err(ServiceError::unprocessable(
                                "invalid_secret",
                                "give the provisioner's `secret` (the mask only keeps an existing one)",
                            ));
                        }
                    },
                    None => {
                        return Err(ServiceError::unprocessable(
                            "invalid_secret",
                            "give the provisioner's `secret` (or the mask, to keep an existing one)",
                        ));
                    }
                }
                Provisioner::Webhook {
                    url: url.into(),
                    secret: None,
                }
            }
            ticket @ Provisioner::Ticket { .. } => self.checked_ticket_provisioner(ticket).await?,
            Provisioner::None => Provisioner::None,
        };
        let resource = Resource {
            id: id.to_owned(),
            name: name.to_owned(),
            description: input.description,
            max_duration,
            require_ticket: input.require_ticket,
            provisioner,
            policy,
        };
        if let Some(secret) = &new_secret {
            self.secrets
                .put_provisioner(id, secret)
                .await
                .map_err(secret_store_error)?;
        }
        self.store.put_resource(&resource).await?;
        let was_webhook = existing
            .as_ref()
            .is_some_and(|r| matches!(r.provisioner, Provisioner::Webhook { .. }));
        if was_webhook && !matches!(resource.provisioner, Provisioner::Webhook { .. }) {
            self.forget_provisioner_secret(id).await;
        }
        tracing::info!(resource = %id, admin = %caller.email, "resource saved");
        Ok((resource, existing.is_none()))
    }

    /// Deletes a resource's provisioner secret once nothing stored refers to it. A failure leaves an unused
    /// secret behind, which is logged (without its value) rather than failing a change already made; a resource
    /// later saved under the same id writes its own secret over it.
    async fn forget_provisioner_secret(&self, id: &str) {
        if let Err(e) = self.secrets.delete_provisioner(id).await {
            tracing::warn!(resource = %id, error = %e, "the unused provisioner secret could not be deleted");
        }
    }

    /// Moves provisioner secrets still held by stored resources (written before secrets were kept apart) into
    /// the secret store, then rewrites each resource without it; returns how many moved. Run at start.
    ///
    /// Idempotent and safe to interrupt: the secret is written before the resource is rewritten, so a crash in
    /// between leaves the resource holding a secret the store also has, and the next start writes the same
    /// value again. Each resource is read again just before, so one changed meanwhile is left to its new state.
    pub async fn move_provisioner_secrets(&self) -> Result<usize, ServiceError> {
        let mut moved = 0;
        let mut cursor = None;
        loop {
            let page = self.store.list_resources(100, cursor.as_deref()).await?;
            for listed in page.items.iter().filter(|r| r.held_secret().is_some()) {
                let Some(current) = self.store.get_resource(&listed.id).await? else {
                    continue;
                };
                let Some(secret) = current.held_secret() else {
                    continue;
                };
                self.secrets
                    .put_provisioner(&current.id, secret)
                    .await
                    .map_err(secret_store_error)?;
                self.store.put_resource(&current.without_secret()).await?;
                tracing::info!(resource = %current.id, "provisioner secret moved to the secret store");
                moved += 1;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(moved),
            }
        }
    }

    /// Deletes a resource; refused while a pending or active grant names it (its end would have no provisioner).
    pub async fn delete_resource(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        super::require_admin(caller, "change resources")?;
        if Slug::parse(id).is_err() {
            return Err(resource_not_found(id));
        }
        if let Some(g) = super::first_open_grant(&*self.store, |g| g.resource == id).await? {
            return Err(ServiceError::conflict(
                "resource_in_use",
                format!(
                    "grant {} ({}) uses `{id}`; end it first",
                    g.id,
                    g.status.as_str()
                ),
            ));
        }
        if self.store.delete_resource(id).await? {
            self.forget_provisioner_secret(id).await;
            Ok(())
        } else {
            Err(resource_not_found(id))
        }
    }
}

/// The provisioners with each `webhook` resource's signing secret loaded from the secret store just before the
/// call (the secret store's own cache keeps this to one read per resource and container for a short time).
/// A resource still holding its secret (stored before secrets moved out, not yet moved) signs with that one.
#[derive(Clone)]
pub struct SecretLoadingProvisioners {
    inner: Arc<dyn Provisioners>,
    secrets: Arc<dyn SecretStore>,
}

impl SecretLoadingProvisioners {
    pub fn new(inner: Arc<dyn Provisioners>, secrets: Arc<dyn SecretStore>) -> Self {
        Self { inner, secrets }
    }
}

#[async_trait]
impl Provisioners for SecretLoadingProvisioners {
    async fn apply(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
    ) -> Result<(), ProvisionError> {
        let Provisioner::Webhook { url, secret: None } = &resource.provisioner else {
            return self.inner.apply(resource, action, grant).await;
        };
        let secret = self
            .secrets
            .get_provisioner(&resource.id)
            .await
            .map_err(|e| ProvisionError(format!("reading the provisioner secret: {e}")))?
            .ok_or_else(|| {
                ProvisionError(format!(
                    "the secret store holds no provisioner secret for resource `{}`; save the resource again with its `secret`",
                    resource.id
                ))
            })?;
        let signed = Resource {
            provisioner: Provisioner::Webhook {
                url: url.clone(),
                secret: Some(secret),
            },
            ..resource.clone()
        };
        self.inner.apply(&signed, action, grant).await
    }
}

fn resource_not_found(id: &str) -> ServiceError {
    ServiceError::not_found("resource_not_found", format!("there is no resource `{id}`"))
}
