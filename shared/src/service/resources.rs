//! The resource catalog (DESIGN §7): anyone reads it, admins change it.

use serde::Deserialize;

use super::{ServiceError, Ticketbound};
use crate::domain::ids::Slug;
use crate::domain::secret::Secret;
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
    pub provisioner: Provisioner,
}

const MIN_SECRET: usize = 16;

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
