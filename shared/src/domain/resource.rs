//! The resource catalog (DESIGN §7): what can be requested, who decides its requests, and how access is set up
//! and removed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::duration::{GrantDuration, IsoDuration};
use super::identity::Caller;
use super::secret::Secret;

/// How access to a resource is set up and removed in the end system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Provisioner {
    /// `POST` `{"action": "grant"|"revoke", "grant": {...}}` to the operator's URL, signed with
    /// `X-Ticketbound-Signature`; a 2xx answer means done.
    Webhook {
        url: String,
        /// The signing secret. It is kept in the secret store, never with the resource: a resource read from
        /// the store has `None` here and the secret is loaded when a call is signed. `Some` is a secret an
        /// admin just sent, or one found in a store written before secrets moved out (moved at start). Always
        /// serialized as the mask.
        #[serde(default, serialize_with = "masked")]
        secret: Option<Secret>,
        /// The endpoint also takes the `reconcile` call: on each reconciliation run it is sent the principals
        /// that should hold access now, so it can converge after a lost `revoke`. Off unless asked for (a v1
        /// endpoint would read the call as something it does not know).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reconcile: bool,
    },
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
    /// Built in: IAM Identity Center. Either an account assignment (`account_id` and `permission_set_arn`: the
    /// requester's user is assigned the permission set in the account) or a group membership (`group_id`: the
    /// user is added to the group). The user is the one `people` maps the requester's e-mail to, or else the one
    /// whose e-mail the identity store holds (`GetUserId` on `emails.value`).
    AwsIdentityCenter {
        instance_arn: String,
        identity_store_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        permission_set_arn: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_id: Option<String>,
        /// Lower-cased e-mail → identity store user id, kept by admins for people whose e-mail the identity store
        /// does not hold (or holds differently).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        people: BTreeMap<String, String>,
        /// Account assignment mode: when access is removed, also deny the user's role sessions issued before the
        /// end (the permission set's inline policy) until none of them can still be valid.
        #[serde(default)]
        cut_sessions: bool,
    },
    /// Record only: nothing is called.
    None,
}

/// The most entries an IAM Identity Center provisioner's `people` mapping holds (it is stored with the resource).
pub const MAX_PEOPLE: usize = 1_000;

/// What an IAM Identity Center provisioner sets up, read from its configuration by
/// [`Provisioner::identity_center_target`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityCenterTarget {
    /// The user is assigned `permission_set_arn` in `account_id`.
    AccountAssignment {
        account_id: String,
        permission_set_arn: String,
    },
    /// The user is made a member of `group_id`.
    GroupMembership { group_id: String },
}

/// Whether `value` is 1 to `max` characters of `[A-Za-z0-9-]` (identity store and Identity Center ids).
fn is_plain_id(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `value` looks like an Identity Center ARN: `arn:<partition>:sso:::` then `[A-Za-z0-9/_-]`, at most
/// 1,224 characters (the service's own limit for permission set ARNs).
fn is_sso_arn(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, tail)) = rest.split_once(':') else {
        return false;
    };
    value.len() <= 1_224
        && is_plain_id(partition, 32)
        && tail.strip_prefix("sso:::").is_some_and(|path| {
            !path.is_empty()
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_'))
        })
}

/// Shows a provisioner secret, whether held or not, as the mask: a response never tells which.
fn masked<S: serde::Serializer>(_: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(super::secret::MASK)
}

impl Provisioner {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Ticket { .. } => "ticket",
            Self::AwsIdentityCenter { .. } => "aws_identity_center",
            Self::None => "none",
        }
    }

    /// An IAM Identity Center provisioner's mode, or why its configuration is not one: exactly one of account
    /// assignment (`account_id` and `permission_set_arn`) and group membership (`group_id`), ids and ARNs of
    /// the shapes AWS gives, `people` keys lower-cased e-mail addresses, and `cut_sessions` only where there
    /// are role sessions to cut (an account assignment). `Ok(None)` for other kinds.
    pub fn identity_center_target(&self) -> Result<Option<IdentityCenterTarget>, String> {
        let Self::AwsIdentityCenter {
            instance_arn,
            identity_store_id,
            account_id,
            permission_set_arn,
            group_id,
            people,
            cut_sessions,
        } = self
        else {
            return Ok(None);
        };
        if !is_sso_arn(instance_arn) || !instance_arn.contains(":instance/") {
            return Err(
                "`instance_arn` must be an IAM Identity Center instance ARN (arn:aws:sso:::instance/ssoins-…)"
                    .into(),
            );
        }
        if !is_plain_id(identity_store_id, 64) {
            return Err("`identity_store_id` must be an identity store id (d-…)".into());
        }
        if people.len() > MAX_PEOPLE {
            return Err(format!(
                "`people` maps at most {MAX_PEOPLE} e-mail addresses"
            ));
        }
        for (email, user_id) in people {
            if !email.contains('@') || email.len() > 254 || *email != email.to_lowercase() {
                return Err(format!(
                    "`people` keys must be lower-cased e-mail addresses; `{email}` is not"
                ));
            }
            if !is_plain_id(user_id, 64) {
                return Err(format!(
                    "`people` maps `{email}` to something that is not an identity store user id"
                ));
            }
        }
        let target = match (account_id, permission_set_arn, group_id) {
            (Some(account), Some(permission_set), None) => {
                if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("`account_id` must be a 12-digit AWS account id".into());
                }
                if !is_sso_arn(permission_set) {
                    return Err("`permission_set_arn` must be a permission set ARN (arn:aws:sso:::permissionSet/…)".into());
                }
                IdentityCenterTarget::AccountAssignment {
                    account_id: account.clone(),
                    permission_set_arn: permission_set.clone(),
                }
            }
            (None, None, Some(group)) => {
                if !is_plain_id(group, 47) {
                    return Err("`group_id` must be an identity store group id".into());
                }
                if *cut_sessions {
                    return Err("`cut_sessions` needs an account assignment (`account_id` and `permission_set_arn`): a group's sessions come from the permission sets assigned to it".into());
                }
                IdentityCenterTarget::GroupMembership {
                    group_id: group.clone(),
                }
            }
            _ => {
                return Err("give either `account_id` and `permission_set_arn` (account assignment) or `group_id` (group membership)".into());
            }
        };
        Ok(Some(target))
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
    /// Who may request, who decides and how many must approve (issue 13); every field has a default that is
    /// the behaviour before policies existed. Flattened: the fields sit beside `provisioner` in the JSON.
    #[serde(flatten)]
    pub policy: ApprovalPolicy,
}

/// The most approvals a resource may require.
pub const MAX_APPROVALS_REQUIRED: u32 = 10;

fn one() -> u32 {
    1
}

/// A resource's approval policy. Absent fields keep the deployment's behaviour: the `APPROVER_GROUP` decides,
/// one approval activates, everyone authenticated may request, nothing is approved without a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Who may approve or deny this resource's requests, instead of the deployment's approver group; `None`:
    /// the approver group.
    #[serde(default)]
    pub approvers: Option<Approvers>,
    /// How many distinct approvers must approve (the requester never counts); 1 to
    /// [`MAX_APPROVALS_REQUIRED`].
    #[serde(default = "one")]
    pub approvals_required: u32,
    /// The groups whose members may request this resource; `None`: everyone authenticated.
    #[serde(default)]
    pub requesters: Option<Vec<String>>,
    /// A rule under which a request is active without a person.
    #[serde(default)]
    pub auto_approve: Option<AutoApprove>,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self {
            approvers: None,
            approvals_required: 1,
            requesters: None,
            auto_approve: None,
        }
    }
}

/// Groups and people who may decide a resource's requests: a caller in any of the groups, or whose e-mail is
/// listed, is one of its approvers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvers {
    #[serde(default)]
    pub groups: Vec<String>,
    /// Lower-cased e-mail addresses.
    #[serde(default)]
    pub users: Vec<String>,
}

impl Approvers {
    /// Whether `caller` is one of these approvers.
    pub fn includes(&self, caller: &Caller) -> bool {
        self.users.contains(&caller.email) || caller.groups.iter().any(|g| self.groups.contains(g))
    }

    /// "groups a, b; users c" for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.groups.is_empty() {
            parts.push(format!("groups {}", self.groups.join(", ")));
        }
        if !self.users.is_empty() {
            parts.push(format!("users {}", self.users.join(", ")));
        }
        parts.join("; ")
    }
}

/// A request is active without a person when it is bound to a ticket (checked at the request: it exists, is
/// open and is assigned to the requester) and asks for a bounded duration of at most `max_duration`.
/// `indefinite` requests are never approved by policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApprove {
    pub max_duration: IsoDuration,
}

/// Who may decide a resource's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deciders<'a> {
    /// The deployment's approver group (`APPROVER_GROUP`).
    ApproverGroup,
    /// The resource's own approvers.
    Listed(&'a Approvers),
}

impl ApprovalPolicy {
    /// Who decides this resource's requests.
    pub fn deciders(&self) -> Deciders<'_> {
        match &self.approvers {
            Some(listed) => Deciders::Listed(listed),
            None => Deciders::ApproverGroup,
        }
    }

    /// Whether `caller` may approve or deny this resource's requests (whoever requested them: that rule is the
    /// grant's).
    pub fn may_decide(&self, caller: &Caller) -> bool {
        match self.deciders() {
            Deciders::ApproverGroup => caller.approver,
            Deciders::Listed(listed) => listed.includes(caller),
        }
    }

    /// Whether `caller` may request this resource.
    pub fn may_request(&self, caller: &Caller) -> bool {
        self.requesters
            .as_ref()
            .is_none_or(|groups| caller.groups.iter().any(|g| groups.contains(g)))
    }

    /// `Some(n)` when the approvers are listed people only and fewer than `approvals_required` of them are not
    /// `requester`: nobody could ever complete the quorum, `n` being how many could approve.
    pub fn unreachable_quorum_for(&self, requester: &str) -> Option<usize> {
        let listed = self.approvers.as_ref()?;
        if !listed.groups.is_empty() {
            return None;
        }
        let others = listed.users.iter().filter(|u| *u != requester).count();
        (others < self.approvals_required as usize).then_some(others)
    }

    /// Whether a request for `duration`, bound to a checked ticket or not, is approved by the policy alone.
    pub fn auto_approves(&self, duration: &GrantDuration, bound_to_ticket: bool) -> bool {
        match (&self.auto_approve, duration) {
            (Some(rule), GrantDuration::Bounded(d)) => {
                bound_to_ticket && d.seconds() <= rule.max_duration.seconds()
            }
            _ => false,
        }
    }
}

impl Resource {
    /// The resource as stored: the same JSON as the API, without the provisioner secret (not even its mask),
    /// which the secret store keeps. Reading it back gives a webhook provisioner whose `secret` is `None`.
    pub fn to_storage_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).expect("a resource always serializes");
        if let Some(provisioner) = json
            .get_mut("provisioner")
            .and_then(serde_json::Value::as_object_mut)
        {
            provisioner.remove("secret");
        }
        json
    }

    /// The webhook provisioner's secret when this value holds it (sent by an admin, or read from a store
    /// written before secrets moved out); `None` for other provisioners and for a resource as now stored.
    pub fn held_secret(&self) -> Option<&Secret> {
        match &self.provisioner {
            Provisioner::Webhook { secret, .. } => secret.as_ref(),
            _ => None,
        }
    }

    /// The same resource without the secret it holds, as it is stored.
    #[must_use]
    pub fn without_secret(&self) -> Self {
        let mut resource = self.clone();
        if let Provisioner::Webhook { secret, .. } = &mut resource.provisioner {
            *secret = None;
        }
        resource
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook_resource(secret: Option<&str>) -> Resource {
        Resource {
            id: "prod-db".into(),
            name: "Production DB".into(),
            description: String::new(),
            max_duration: None,
            require_ticket: true,
            provisioner: Provisioner::Webhook {
                url: "https://hooks.example.com".into(),
                secret: secret.map(Secret::new),
                reconcile: false,
            },
            policy: ApprovalPolicy::default(),
        }
    }

    #[test]
    fn webhook_secret_is_masked_in_json_and_left_out_of_storage() {
        let resource = webhook_resource(Some("s3cret-provisioner"));
        let api = serde_json::to_value(&resource).unwrap();
        assert_eq!(api["provisioner"]["secret"], super::super::secret::MASK);
        let stored = resource.to_storage_json();
        assert!(!stored.to_string().contains("s3cret"), "{stored}");
        assert!(stored["provisioner"].get("secret").is_none(), "{stored}");
        let back: Resource = serde_json::from_value(stored).unwrap();
        assert_eq!(back, resource.without_secret());
        assert_eq!(back.held_secret(), None);
        // Read back, it still answers the mask.
        assert_eq!(
            serde_json::to_value(&back).unwrap()["provisioner"]["secret"],
            super::super::secret::MASK
        );
    }

    #[test]
    fn a_resource_stored_with_its_secret_in_clear_still_reads_and_holds_it() {
        let old = r#"{"id":"prod-db","name":"Production DB","require_ticket":true,
            "provisioner":{"kind":"webhook","url":"https://hooks.example.com","secret":"s3cret-provisioner"}}"#;
        let resource: Resource = serde_json::from_str(old).unwrap();
        assert_eq!(
            resource.held_secret(),
            Some(&Secret::new("s3cret-provisioner"))
        );
        assert_eq!(resource, webhook_resource(Some("s3cret-provisioner")));
    }

    #[test]
    fn unknown_provisioner_kinds_are_rejected() {
        let err = serde_json::from_str::<Provisioner>(r#"{"kind":"ldap"}"#);
        assert!(err.is_err());
    }

    fn identity_center(extra: serde_json::Value) -> Result<Provisioner, serde_json::Error> {
        let mut json = serde_json::json!({
            "kind": "aws_identity_center",
            "instance_arn": "arn:aws:sso:::instance/ssoins-0123456789abcdef",
            "identity_store_id": "d-0123456789",
        });
        for (k, v) in extra.as_object().unwrap() {
            json[k] = v.clone();
        }
        serde_json::from_value(json)
    }

    #[test]
    fn an_identity_center_provisioner_is_one_of_two_modes() {
        let assignment = identity_center(serde_json::json!({
            "account_id": "123456789012",
            "permission_set_arn": "arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-0123456789abcdef",
            "cut_sessions": true,
        }))
        .unwrap();
        assert_eq!(
            assignment.identity_center_target(),
            Ok(Some(IdentityCenterTarget::AccountAssignment {
                account_id: "123456789012".into(),
                permission_set_arn:
                    "arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-0123456789abcdef".into(),
            }))
        );
        // It reads back as it was written.
        let json = serde_json::to_value(&assignment).unwrap();
        assert_eq!(
            serde_json::from_value::<Provisioner>(json).unwrap(),
            assignment
        );
        let group = identity_center(serde_json::json!({"group_id": "g-1"})).unwrap();
        assert_eq!(
            group.identity_center_target(),
            Ok(Some(IdentityCenterTarget::GroupMembership {
                group_id: "g-1".into()
            }))
        );
        assert_eq!(Provisioner::None.identity_center_target(), Ok(None));
    }

    #[test]
    fn identity_center_configurations_that_are_neither_mode_or_malformed_are_refused() {
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"account_id": "123456789012"}),
            serde_json::json!({"group_id": "g-1", "account_id": "123456789012", "permission_set_arn": "arn:aws:sso:::permissionSet/a/b"}),
            serde_json::json!({"account_id": "12345678901x", "permission_set_arn": "arn:aws:sso:::permissionSet/a/b"}),
            serde_json::json!({"account_id": "123456789012", "permission_set_arn": "arn:aws:iam::123456789012:role/x"}),
            serde_json::json!({"group_id": "g 1"}),
            serde_json::json!({"group_id": "g-1", "cut_sessions": true}),
            serde_json::json!({"group_id": "g-1", "people": {"Alice@Example.com": "u-1"}}),
            serde_json::json!({"group_id": "g-1", "people": {"alice@example.com": "u 1"}}),
            serde_json::json!({"group_id": "g-1", "identity_store_id": ""}),
            serde_json::json!({"group_id": "g-1", "instance_arn": "arn:aws:sso:::permissionSet/x"}),
        ] {
            let provisioner = identity_center(bad.clone()).unwrap();
            assert!(provisioner.identity_center_target().is_err(), "{bad}");
        }
        assert!(
            identity_center(serde_json::json!({"group_id": "g-1", "role": "x"})).is_err(),
            "unknown fields are malformed"
        );
    }

    fn caller(email: &str, groups: &[&str]) -> Caller {
        Caller::new(
            email,
            groups.iter().map(|g| (*g).to_owned()).collect(),
            &super::super::identity::RoleGroups::default(),
        )
    }

    #[test]
    fn a_resource_without_a_policy_reads_as_the_deployment_defaults() {
        let old = r#"{"id":"prod-db","name":"Prod","provisioner":{"kind":"none"}}"#;
        let resource: Resource = serde_json::from_str(old).unwrap();
        assert_eq!(resource.policy, ApprovalPolicy::default());
        let json = serde_json::to_value(&resource).unwrap();
        assert_eq!(json["approvals_required"], 1);
        assert!(json["approvers"].is_null() && json["requesters"].is_null());
        assert!(json["auto_approve"].is_null());
    }

    #[test]
    fn without_listed_approvers_the_approver_group_decides() {
        let policy = ApprovalPolicy::default();
        assert!(policy.may_decide(&caller("bob@example.com", &["ticketbound-approvers"])));
        assert!(!policy.may_decide(&caller("eve@example.com", &["dba"])));
    }

    #[test]
    fn listed_approvers_replace_the_approver_group() {
        let policy = ApprovalPolicy {
            approvers: Some(Approvers {
                groups: vec!["dba".into()],
                users: vec!["dana@example.com".into()],
            }),
            ..ApprovalPolicy::default()
        };
        assert!(policy.may_decide(&caller("eve@example.com", &["dba"])));
        assert!(policy.may_decide(&caller("Dana@Example.com", &[])));
        assert!(!policy.may_decide(&caller("bob@example.com", &["ticketbound-approvers"])));
    }

    #[test]
    fn requesters_limit_who_may_request() {
        let open = ApprovalPolicy::default();
        assert!(open.may_request(&caller("alice@example.com", &[])));
        let closed = ApprovalPolicy {
            requesters: Some(vec!["oncall".into()]),
            ..ApprovalPolicy::default()
        };
        assert!(closed.may_request(&caller("alice@example.com", &["dev", "oncall"])));
        assert!(!closed.may_request(&caller("alice@example.com", &["dev"])));
    }

    #[test]
    fn a_quorum_of_listed_people_the_requester_is_part_of_can_be_unreachable() {
        let policy = ApprovalPolicy {
            approvers: Some(Approvers {
                groups: vec![],
                users: vec!["a@example.com".into(), "b@example.com".into()],
            }),
            approvals_required: 2,
            ..ApprovalPolicy::default()
        };
        assert_eq!(policy.unreachable_quorum_for("c@example.com"), None);
        assert_eq!(policy.unreachable_quorum_for("a@example.com"), Some(1));
    }

    #[test]
    fn only_a_bound_request_within_the_limit_is_approved_by_policy() {
        let policy = ApprovalPolicy {
            auto_approve: Some(AutoApprove {
                max_duration: IsoDuration::parse("PT4H").unwrap(),
            }),
            ..ApprovalPolicy::default()
        };
        let d = |s: &str| GrantDuration::parse(s).unwrap();
        assert!(policy.auto_approves(&d("PT4H"), true));
        assert!(!policy.auto_approves(&d("PT4H"), false));
        assert!(!policy.auto_approves(&d("PT5H"), true));
        assert!(!policy.auto_approves(&d("indefinite"), true));
        assert!(!ApprovalPolicy::default().auto_approves(&d("PT1H"), true));
    }
}
