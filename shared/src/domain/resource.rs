//! The resource catalog (DESIGN §7): what can be requested and how access is set up and removed.

use serde::{Deserialize, Serialize};

use super::duration::IsoDuration;
use super::secret::Secret;

/// How access to a resource is set up and removed in the end system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Provisioner {
    /// `POST` `{"action": "grant"|"revoke", "grant": {...}}` to the operator's URL, signed with
    /// `X-Ticketbound-Signature`; a 2xx answer means done.
    Webhook { url: String, secret: Secret },
    /// Open a ticket in a connection asking a person to grant or remove the access.
    Ticket {
        connection: String,
        /// Jira: the project key for the ticket.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<String>,
        /// Jira: the issue type name (default `Task`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issue_type: Option<String>,
        /// Freshservice: the group to assign.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_id: Option<u64>,
        /// Freshservice: priority 1–4 (default 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<u8>,
    },
    /// Record only: nothing is called.
    None,
}

impl Provisioner {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Ticket { .. } => "ticket",
            Self::None => "none",
        }
    }
}

/// A requestable resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The longest grant allowed; the deployment's `MAX_DURATION` when absent.
    #[serde(default)]
    pub max_duration: Option<IsoDuration>,
    #[serde(default)]
    pub require_ticket: bool,
    pub provisioner: Provisioner,
}

impl Resource {
    /// The resource as stored: the same JSON as the API, but with the provisioner secret in clear.
    pub fn to_storage_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).expect("a resource always serializes");
        if let Provisioner::Webhook { secret, .. } = &self.provisioner {
            json["provisioner"]["secret"] = serde_json::Value::String(secret.expose().to_owned());
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_secret_is_masked_in_json_but_kept_for_storage() {
        let resource = Resource {
            id: "prod-db".into(),
            name: "Production DB".into(),
            description: String::new(),
            max_duration: None,
            require_ticket: true,
            provisioner: Provisioner::Webhook {
                url: "https://hooks.example.com".into(),
                secret: Secret::new("s3cret"),
            },
        };
        let api = serde_json::to_string(&resource).unwrap();
        assert!(!api.contains("s3cret"));
        let stored = resource.to_storage_json();
        assert_eq!(stored["provisioner"]["secret"], "s3cret");
        let back: Resource = serde_json::from_value(stored).unwrap();
        assert_eq!(back, resource);
    }

    #[test]
    fn unknown_provisioner_kinds_are_rejected() {
        let err = serde_json::from_str::<Provisioner>(r#"{"kind":"ldap"}"#);
        assert!(err.is_err());
    }
}
