//! The resource catalog (DESIGN §7): anyone reads it, admins change it. A resource may carry its own approval
//! policy, validated here: every field of it refused with a 422 naming the field.
//!
//! Every stored resource has a version, and clients see it as an entity tag (`ETag`). A client that states the
//! version it edited (`If-Match`) never overwrites a change it has not seen: of two admins saving edits of one
//! version, the second gets a `version_conflict` with the resource as it now is, instead of silently erasing
//! the first one's change (the approval policy included). `PATCH` takes a JSON Merge Patch, so a client changes
//! one field without restating, and possibly dropping, the others.
//!
//! A `webhook` provisioner's signing secret is kept in the secret store (the connections' one), never with the
//! resource: anyone who could read the table or the local database file could otherwise sign `grant` calls
//! to the operator's provisioner. Saving writes the secret first and the resource (without it) second, so a
//! stored resource never names a secret the store lacks; [`SecretLoadingProvisioners`] loads it when a call is
//! signed; [`Ticketbound::move_provisioner_secrets`] moves secrets out of resources stored before, at start.

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::{ErrorKind, ServiceError, Ticketbound};
use crate::domain::identity::{Email, normalize_email};
use crate::domain::ids::Slug;
use crate::domain::resource::{ApprovalPolicy, Approvers, AutoApprove, MAX_APPROVALS_REQUIRED};
use crate::domain::secret::Secret;
use crate::domain::text::{self, Lines};
use crate::domain::url_policy::check_outbound_url;
use crate::domain::{Caller, Grant, IsoDuration, Provisioner, Resource};
use crate::ports::{
    Convergence, Page, ProvisionAction, ProvisionError, ProvisionOutcome, Provisioners,
    ReconcileCall, ResourceExpected, SecretStore, SecretStoreError, StoreError, VersionedResource,
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

/// The entity tag of a versioned record (a resource, a connection's settings): `"<version>-<digest>"`, the quotes
/// included. The digest of what is stored (never a secret: a resource as the API shows it, secrets masked; a
/// connection's settings) tells a record deleted and created again at the same version from the one a client
/// read before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityTag(String);

impl EntityTag {
    /// The tag of `record` stored at `version`.
    pub fn of(record: &impl serde::Serialize, version: u64) -> Self {
        let shown = serde_json::to_vec(record).unwrap_or_default();
        let digest = hex::encode(&Sha256::digest(&shown)[..8]);
        Self(format!("\"{version}-{digest}\""))
    }

    /// The header value, quotes included.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The entity tag of a stored resource, the one every answer (`GET`, a list, a write, a `412`) gives it.
fn tag_of(stored: &VersionedResource) -> EntityTag {
    EntityTag::of(&stored.resource, stored.version)
}

/// What a write requires of the stored resource, from the request's conditional headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// No condition: the write applies to whatever is stored (scripts written before versions existed).
    None,
    /// `If-Match: *`: the resource exists.
    Exists,
    /// `If-Match: "…"`: the stored resource has one of these entity tags (strong comparison: a weak tag never
    /// matches).
    Matches(Vec<String>),
    /// `If-None-Match: *`: there is no such resource yet (create only).
    Absent,
}

impl Precondition {
    fn holds(&self, stored: Option<&VersionedResource>) -> bool {
        self.holds_for(stored.map(tag_of).as_ref())
    }

    /// Whether the precondition holds of a record whose tag is `tag` (`None`: there is no such record).
    pub(crate) fn holds_for(&self, tag: Option<&EntityTag>) -> bool {
        match self {
            Self::None => true,
            Self::Exists => tag.is_some(),
            Self::Matches(tags) => tag.is_some_and(|t| tags.contains(&t.0)),
            Self::Absent => tag.is_none(),
        }
    }
}

/// A resource as written, with its new entity tag.
#[derive(Clone, Debug)]
pub struct SavedResource {
    pub resource: Resource,
    pub tag: EntityTag,
    /// Whether the write created the resource.
    pub created: bool,
}

/// Why a resource was not written.
#[derive(Debug, thiserror::Error)]
pub enum ResourceWriteError {
    /// The request's precondition does not hold: the resource changed (or was deleted, or created) since the
    /// client read it. `current` is the resource now stored, if any, for the client to merge its edit into.
    #[error("the resource changed since it was read")]
    VersionConflict {
        current: Option<Box<(Resource, EntityTag)>>,
    },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl ResourceWriteError {
    fn conflict(stored: Option<VersionedResource>) -> Self {
        Self::VersionConflict {
            current: stored.map(|s| {
                let tag = tag_of(&s);
                Box::new((s.resource, tag))
            }),
        }
    }
}

impl From<StoreError> for ResourceWriteError {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

/// How many times a write without a precondition is made again after losing to a concurrent one.
const WRITE_TRIES: usize = 5;

/// Applies a JSON Merge Patch (RFC 7396) to `target`: an object merges member by member, `null` removes a
/// member, anything else replaces the target.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (name, value) in members {
        if value.is_null() {
            target.remove(name);
        } else {
            merge_patch(
                target
                    .entry(name.clone())
                    .or_insert(serde_json::Value::Null),
                value,
            );
        }
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

    /// `GET /v1/resources`: each resource with the entity tag a single read of it answers (the same
    /// `tag_of`), so a client can change or delete one from the list under `If-Match`.
    pub async fn list_tagged_resources(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<(Resource, EntityTag)>, ServiceError> {
        let page = self.store.list_resources_versioned(limit, cursor).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|stored| {
                    let tag = tag_of(&stored);
                    (stored.resource, tag)
                })
                .collect(),
            next: page.next,
        })
    }

    pub async fn get_resource(&self, id: &str) -> Result<Resource, ServiceError> {
        Ok(self.get_tagged_resource(id).await?.0)
    }

    /// A resource with its entity tag (`ETag`).
    pub async fn get_tagged_resource(
        &self,
        id: &str,
    ) -> Result<(Resource, EntityTag), ServiceError> {
        if Slug::parse(id).is_err() {
            return Err(resource_not_found(id));
        }
        let stored = self
            .store
            .get_resource_versioned(id)
            .await?
            .ok_or_else(|| resource_not_found(id))?;
        let tag = tag_of(&stored);
        Ok((stored.resource, tag))
    }

    /// Creates or replaces a resource whatever is stored. `Ok((resource, created))`.
    pub async fn put_resource(
        &self,
        caller: &Caller,
        id: &str,
        input: ResourceInput,
    ) -> Result<(Resource, bool), ServiceError> {
        match self
            .put_resource_if(caller, id, input, &Precondition::None)
            .await
        {
            Ok(saved) => Ok((saved.resource, saved.created)),
            Err(ResourceWriteError::Service(e)) => Err(e),
            // A write without a precondition never conflicts; should it, it is a bug, not the client's.
            Err(ResourceWriteError::VersionConflict { .. }) => Err(ServiceError::internal(
                "a resource write without a precondition reported a version conflict",
            )),
        }
    }

    /// Creates or replaces a resource (`PUT`) if `precondition` holds.
    pub async fn put_resource_if(
        &self,
        caller: &Caller,
        id: &str,
        input: ResourceInput,
        precondition: &Precondition,
    ) -> Result<SavedResource, ResourceWriteError> {
        self.write_resource(caller, id, precondition, |_| Ok(input.clone()))
            .await
    }

    /// Changes the fields of a resource that a JSON Merge Patch (RFC 7396) names (`PATCH`): the patch applies
    /// to the resource as `GET` answers it, and the result is checked exactly as a `PUT` body.
    pub async fn patch_resource(
        &self,
        caller: &Caller,
        id: &str,
        patch: &serde_json::Value,
        precondition: &Precondition,
    ) -> Result<SavedResource, ResourceWriteError> {
        self.write_resource(caller, id, precondition, |current| {
            let current = current.ok_or_else(|| resource_not_found(id))?;
            let mut merged =
                serde_json::to_value(current).map_err(|e| ServiceError::internal(e.to_string()))?;
            merge_patch(&mut merged, patch);
            // The patch itself is a well-formed merge patch (the body was read as a JSON object); what breaks
            // a rule is the resource it makes of the stored one, hence 422.
            serde_json::from_value(merged).map_err(|e| {
                ServiceError::unprocessable(
                    "invalid_patch",
                    format!("the patched resource is not a valid resource: {e}"),
                )
            })
        })
        .await
    }

    /// The read-check-write of `PUT` and `PATCH`: `input_for` builds the body from the stored resource, the
    /// write is conditional on the version read, and a write that loses to another one is a
    /// `version_conflict` when the client stated the version it edited, or is made again on top of the newer
    /// version when it did not (the last writer wins, as before versions existed).
    async fn write_resource(
        &self,
        caller: &Caller,
        id: &str,
        precondition: &Precondition,
        input_for: impl Fn(Option<&Resource>) -> Result<ResourceInput, ServiceError>,
    ) -> Result<SavedResource, ResourceWriteError> {
        super::require_admin(caller, "change resources")?;
        if Slug::parse(id).is_err() {
            return Err(ServiceError::unprocessable(
                "invalid_id",
                "a resource id is 1–64 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit",
            )
            .into());
        }
        for _ in 0..WRITE_TRIES {
            let stored = self.store.get_resource_versioned(id).await?;
            if !precondition.holds(stored.as_ref()) {
                return Err(ResourceWriteError::conflict(stored));
            }
            let existing = stored.as_ref().map(|s| &s.resource);
            let (resource, new_secret) = self
                .checked_resource(id, input_for(existing)?, existing)
                .await?;
            let expected = match &stored {
                Some(s) => ResourceExpected::Version(s.version),
                None => ResourceExpected::Absent,
            };
            // The secret first, the resource second: a stored webhook resource never lacks its secret. A write
            // that then loses its condition leaves the new secret in the store beside the other admin's
            // resource, so the one it replaced is put back.
            let replaced = match &new_secret {
                Some(secret) => Some(self.replace_provisioner_secret(id, secret).await?),
                None => None,
            };
            let written = self.store.put_resource_if(&resource, expected).await;
            if written.is_err()
                && let Some(previous) = replaced
            {
                self.restore_provisioner_secret(id, previous).await;
            }
            match written {
                Ok(version) => {
                    let was_webhook = existing
                        .is_some_and(|r| matches!(r.provisioner, Provisioner::Webhook { .. }));
                    if was_webhook && !matches!(resource.provisioner, Provisioner::Webhook { .. }) {
                        self.forget_provisioner_secret(id).await;
                    }
                    tracing::info!(resource = %id, admin = %caller.email, version, "resource saved");
                    return Ok(SavedResource {
                        tag: EntityTag::of(&resource, version),
                        created: stored.is_none(),
                        resource,
                    });
                }
                Err(StoreError::Conflict) if *precondition == Precondition::None => continue,
                Err(StoreError::Conflict) => {
                    let now = self.store.get_resource_versioned(id).await?;
                    return Err(ResourceWriteError::conflict(now));
                }
                Err(e) => return Err(ServiceError::from(e).into()),
            }
        }
        Err(ServiceError::new(
            ErrorKind::Unavailable,
            "resource_busy",
            format!("`{id}` kept changing while it was being saved; try again"),
        )
        .into())
    }

    /// Checks a body for resource `id`; `existing` is what is stored (a masked provisioner secret keeps its
    /// secret). Gives the resource as it is to be stored and the provisioner secret to write to the secret store
    /// first, if any.
    async fn checked_resource(
        &self,
        id: &str,
        input: ResourceInput,
        existing: Option<&Resource>,
    ) -> Result<(Resource, Option<Secret>), ServiceError> {
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
        text::check("name", name, Lines::Single)?;
        text::check("description", &input.description, Lines::Multi)?;
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
        // The secret to write to the secret store before the resource, if any.
        let mut new_secret = None;
        let provisioner = match input.provisioner {
            Provisioner::Webhook {
                url,
                secret,
                reconcile,
            } => {
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
                    Some(_) => match existing.map(|r| &r.provisioner) {
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
                    reconcile,
                }
            }
            ticket @ Provisioner::Ticket { .. } => self.checked_ticket_provisioner(ticket).await?,
            identity_center @ Provisioner::AwsIdentityCenter { .. } => {
                if !self.provisioners.offers(identity_center.kind()) {
                    return Err(ServiceError::unprocessable(
                        "provisioner_unavailable",
                        "this deployment has no IAM Identity Center provisioner (it is built in on AWS only); choose another `kind`",
                    ));
                }
                identity_center
                    .identity_center_target()
                    .map_err(|e| ServiceError::unprocessable("invalid_provisioner", e))?;
                identity_center
            }
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
        Ok((resource, new_secret))
    }

    /// Writes `secret` as resource `id`'s provisioner secret; gives the one it replaced.
    async fn replace_provisioner_secret(
        &self,
        id: &str,
        secret: &Secret,
    ) -> Result<Option<Secret>, ServiceError> {
        let previous = self
            .secrets
            .get_provisioner(id)
            .await
            .map_err(secret_store_error)?;
        self.secrets
            .put_provisioner(id, secret)
            .await
            .map_err(secret_store_error)?;
        Ok(previous)
    }

    /// Puts back the provisioner secret a write replaced before it lost its condition. A failure is logged
    /// (without the value): the resource then signs with the newer secret until an admin saves it again.
    async fn restore_provisioner_secret(&self, id: &str, previous: Option<Secret>) {
        let restored = match &previous {
            Some(secret) => self.secrets.put_provisioner(id, secret).await,
            None => self.secrets.delete_provisioner(id).await,
        };
        if let Err(e) = restored {
            tracing::warn!(resource = %id, error = %e, "the provisioner secret replaced by a write that lost could not be put back");
        }
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

    /// Deletes a resource if `precondition` holds; refused while a pending or active grant names it (its end
    /// would have no provisioner).
    pub async fn delete_resource(
        &self,
        caller: &Caller,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ResourceWriteError> {
        super::require_admin(caller, "change resources")?;
        if Slug::parse(id).is_err() {
            return Err(resource_not_found(id).into());
        }
        let stored = self.store.get_resource_versioned(id).await?;
        if !precondition.holds(stored.as_ref()) {
            return Err(ResourceWriteError::conflict(stored));
        }
        let Some(stored) = stored else {
            return Err(resource_not_found(id).into());
        };
        if let Some(g) = super::first_open_grant(&*self.store, |g| g.resource == id).await? {
            return Err(ServiceError::conflict(
                "resource_in_use",
                format!(
                    "grant {} ({}) uses `{id}`; end it first",
                    g.id,
                    g.status.as_str()
                ),
            )
            .into());
        }
        match self.store.delete_resource_if(id, stored.version).await {
            Ok(()) => {
                self.forget_provisioner_secret(id).await;
                tracing::info!(resource = %id, admin = %caller.email, "resource deleted");
                Ok(())
            }
            Err(StoreError::Conflict) if *precondition == Precondition::None => {
                // Changed since it was read: deleted whatever it now holds, as before versions existed.
                if self.store.delete_resource(id).await? {
                    self.forget_provisioner_secret(id).await;
                    Ok(())
                } else {
                    Err(resource_not_found(id).into())
                }
            }
            Err(StoreError::Conflict) => Err(ResourceWriteError::conflict(
                self.store.get_resource_versioned(id).await?,
            )),
            Err(e) => Err(ServiceError::from(e).into()),
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

impl SecretLoadingProvisioners {
    /// `resource` with its webhook signing secret loaded from the secret store; as it is when it holds one
    /// already (stored before secrets moved out) or signs nothing.
    async fn with_secret(&self, resource: &Resource) -> Result<Resource, ProvisionError> {
        let Provisioner::Webhook {
            url,
            secret: None,
            reconcile,
        } = &resource.provisioner
        else {
            return Ok(resource.clone());
        };
        let secret = self
            .secrets
            .get_provisioner(&resource.id)
            .await
            .map_err(|e| ProvisionError::retryable(format!("reading the provisioner secret: {e}")))?
            .ok_or_else(|| {
                ProvisionError::retryable(format!(
                    "the secret store holds no provisioner secret for resource `{}`; save the resource again with its `secret`",
                    resource.id
                ))
            })?;
        Ok(Resource {
            provisioner: Provisioner::Webhook {
                url: url.clone(),
                secret: Some(secret),
                reconcile: *reconcile,
            },
            ..resource.clone()
        })
    }
}

#[async_trait]
impl Provisioners for SecretLoadingProvisioners {
    async fn apply(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let signed = self.with_secret(resource).await?;
        self.inner.apply(&signed, action, grant).await
    }

    async fn poll(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
        status_url: &str,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let signed = self.with_secret(resource).await?;
        self.inner.poll(&signed, action, grant, status_url).await
    }

    fn offers(&self, kind: &str) -> bool {
        self.inner.offers(kind)
    }

    async fn end_session_cut(
        &self,
        resource: &Resource,
        grant: &Grant,
    ) -> Result<(), ProvisionError> {
        self.inner.end_session_cut(resource, grant).await
    }

    async fn reconcile(
        &self,
        resource: &Resource,
        call: &ReconcileCall<'_>,
    ) -> Result<Convergence, ProvisionError> {
        let signed = self.with_secret(resource).await?;
        self.inner.reconcile(&signed, call).await
    }
}

fn resource_not_found(id: &str) -> ServiceError {
    ServiceError::not_found("resource_not_found", format!("there is no resource `{id}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_merge_patch_follows_the_examples_of_rfc_7396() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    fn resource(description: &str) -> Resource {
        Resource {
            id: "prod-db".into(),
            name: "Prod".into(),
            description: description.into(),
            max_duration: None,
            require_ticket: false,
            provisioner: Provisioner::Webhook {
                url: "https://hooks.example.com".into(),
                secret: Some(Secret::new("a-provisioner-secret")),
                reconcile: false,
            },
            policy: ApprovalPolicy::default(),
        }
    }

    #[test]
    fn the_entity_tag_changes_with_the_version_and_with_the_content_and_holds_no_secret() {
        let tag = EntityTag::of(&resource("a"), 1);
        assert!(tag.as_str().starts_with("\"1-") && tag.as_str().ends_with('"'));
        assert_eq!(tag, EntityTag::of(&resource("a"), 1));
        assert_ne!(tag, EntityTag::of(&resource("a"), 2));
        assert_ne!(tag, EntityTag::of(&resource("b"), 1));
        assert!(!tag.as_str().contains("secret"));
    }

    #[test]
    fn a_precondition_compares_whole_strong_tags() {
        let stored = VersionedResource {
            resource: resource("a"),
            version: 3,
        };
        let tag = EntityTag::of(&stored.resource, 3).as_str().to_owned();
        assert!(Precondition::None.holds(Some(&stored)) && Precondition::None.holds(None));
        assert!(Precondition::Matches(vec![tag.clone()]).holds(Some(&stored)));
        assert!(Precondition::Matches(vec!["\"x\"".into(), tag.clone()]).holds(Some(&stored)));
        assert!(!Precondition::Matches(vec![format!("W/{tag}")]).holds(Some(&stored)));
        assert!(!Precondition::Matches(vec![tag]).holds(None));
        assert!(Precondition::Exists.holds(Some(&stored)) && !Precondition::Exists.holds(None));
        assert!(Precondition::Absent.holds(None) && !Precondition::Absent.holds(Some(&stored)));
    }
}
