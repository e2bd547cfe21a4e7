//! The resource catalog (DESIGN §7): anyone reads it, admins change it. A resource may carry its own approval
//! policy (issue 13), validated here: every field of it refused with a 422 naming the field.

use serde::Deserialize;

use super::{ServiceError, Ticketbound};
use crate::domain::identity::{Email, normalize_email};
use crate::domain::ids::Slug;
use crate::domain::resource::{ApprovalPolicy, Approvers, AutoApprove, MAX_APPROVALS_REQUIRED};
use crate::domain::secret::Secret;
use crate::domain::text::{self, Lines};
use crate::domain::url_policy::check_outbound_url;
use crate::domain::{Caller, IsoDuration, Provisioner, Resource};
use crate::ports::Page;

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
    #[serde(deserialize_with = "exact_provisioner")]
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

/// A provisioner as sent, refusing fields its kind does not take. Serde cannot refuse unknown fields beside a
/// variant without fields, so an operator's `url` and `secret` sent with `"kind": "none"` would silently vanish.
fn exact_provisioner<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Provisioner, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(d)?;
    if value["kind"] == "none"
        && let Some(extra) = value
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "kind"))
    {
        return Err(D::Error::custom(format!(
            "unknown field `{extra}`: a `none` provisioner takes only `kind`"
        )));
    }
    Provisioner::deserialize(value).map_err(D::Error::custom)
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
        let existing = self.store.get_resource(id).await?;
        let provisioner = match input.provisioner {
            Provisioner::Webhook { url, secret } => {
                check_outbound_url(&url)
                    .map_err(|e| ServiceError::unprocessable("invalid_url", e.to_string()))?;
                let secret = if secret.is_mask() {
                    // Read back and sent unchanged: keep the stored secret.
                    match existing.as_ref().map(|r| &r.provisioner) {
                        Some(Provisioner::Webhook { secret, .. }) => secret.clone(),
                        _ => {
                            return Err(ServiceError::unprocessable(
                                "invalid_secret",
                                "give the provisioner's `secret` (the mask only keeps an existing one)",
                            ));
                        }
                    }
                } else if secret.expose().len() < MIN_SECRET {
                    return Err(ServiceError::unprocessable(
                        "invalid_secret",
                        format!(
                            "the provisioner `secret` must be at least {MIN_SECRET} characters"
                        ),
                    ));
                } else {
                    Secret::new(secret.expose())
                };
                Provisioner::Webhook { url, secret }
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
        self.store.put_resource(&resource).await?;
        tracing::info!(resource = %id, admin = %caller.email, "resource saved");
        Ok((resource, existing.is_none()))
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
            Ok(())
        } else {
            Err(resource_not_found(id))
        }
    }
}

fn resource_not_found(id: &str) -> ServiceError {
    ServiceError::not_found("resource_not_found", format!("there is no resource `{id}`"))
}
