//! The built-in IAM Identity Center provisioner (`kind: aws_identity_center`, DESIGN §7): access is an account
//! assignment (a permission set in an account) or a membership of an identity store group, for the requester's
//! Identity Center user.
//!
//! - **The user.** The resource's `people` mapping first (admins keep it for people whose e-mail the identity
//!   store holds differently), else `GetUserId` on the unique attribute `emails.value`. Nobody found is a
//!   `failed` call naming the e-mail: access is never given to a guessed user.
//! - **Account assignments are asynchronous.** `CreateAccountAssignment` / `DeleteAccountAssignment` answer with
//!   a request that may still be `IN_PROGRESS`: the call is then [`ProvisionOutcome::Accepted`] with the opaque
//!   status token `aws-sso:request/<RequestId>`, and the engine checks it again with backoff through
//!   [`IdentityCenter::poll`] (`Describe…CreationStatus` / `Describe…DeletionStatus`); never a wait in a request.
//!   A `FAILED` status is a failed call with AWS's `FailureReason`.
//! - **Idempotent.** Every attempt looks first: an assignment or membership already there is granted, one
//!   already gone is removed. A `ConflictException` on a create is done once the assignment is seen (a
//!   membership's conflict is the membership itself); a `ResourceNotFoundException` on a delete is done. A
//!   deletion that succeeded is checked once more: an assignment still there (made again meanwhile) is a failed
//!   attempt, so a removal is never recorded while the access remains.
//! - **Live sessions** (`cut_sessions`, account assignments). Deleting an assignment does not end the role
//!   sessions it issued: they stay valid for the permission set's `SessionDuration`. With `cut_sessions`, the
//!   removal first puts a statement in the permission set's inline policy denying that user's sessions issued
//!   before the end (`aws:TokenIssueTime` and `identitystore:userId`, as AWS documents for revoking permission
//!   set sessions) and re-provisions the permission set. The statement names when it can go (the end plus the
//!   session duration): the receipt's `cut_until`, for which the engine arms a one-time
//!   [`crate::ports::JobKind::EndSessionCut`] that takes it out ([`IdentityCenter::end_session_cut`]). Cuts past
//!   their time are also pruned whenever the policy is written, oldest first, so the policy stays under
//!   [`MAX_INLINE_POLICY_CHARS`]; a cut that would not fit even then is not placed, and the grant records that
//!   sessions will expire. Other users' sessions of the same permission set are never affected (each statement
//!   names one user). Without `cut_sessions`, the grant records `residual_until` = the end plus the session
//!   duration.
//!
//! - **Reconciliation** (account assignments; [`IdentityCenter::reconcile`]). On each reconciliation run the
//!   assignments of the permission set in the account are listed once (every page) and compared with who should
//!   hold them. An assignment of a user whose grant of this resource ended lately, and who holds no active
//!   grant, outlived its grant (a lost removal, or one made again by hand): it is deleted, the deletion's status
//!   checked like any removal, and reported so the grant's trail records it. An assignment of anyone else
//!   Ticketbound never made: it is never touched, only counted. An active grant whose assignment is missing is
//!   reported and not made again (someone may have cut it on purpose). Group memberships are not compared.
//!
//! Errors are classified by [`crate::adapters::aws_errors`], the engine's one classifier: a retryable fault
//! (throttling, a server error) or a conflict (another operation on the same permission set) is a failed attempt
//! the engine retries, a permanent one (access denied, validation, a missing instance) a `failed` call with AWS's
//! code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_identitystore::types::{AlternateIdentifier, MemberId, UniqueAttribute};
use aws_sdk_ssoadmin::types::{
    AccountAssignmentOperationStatus, PrincipalType, ProvisionTargetType, StatusValues, TargetType,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::aws_errors::{classify, describe};
use crate::domain::duration::IsoDuration;
use crate::domain::resource::IdentityCenterTarget;
use crate::domain::side_effect::{Failure, SessionsOutcome};
use crate::domain::{Grant, Provisioner, Resource};
use crate::ports::{
    Clock, Convergence, EndedHolder, ProvisionAction, ProvisionError, ProvisionOutcome,
    ProvisionReceipt, ReconcileCall, RemovedAgain,
};

/// What a status token starts with; the rest is the account assignment request's id.
pub const STATUS_TOKEN_PREFIX: &str = "aws-sso:request/";

/// The largest inline policy IAM Identity Center keeps on a permission set, in characters.
pub const MAX_INLINE_POLICY_CHARS: usize = 10_240;

/// What the `Sid` of a session cut starts with: `TicketboundCut<grant id>Until<unix seconds>`.
const CUT_SID_PREFIX: &str = "TicketboundCut";

/// A permission set's session duration when it names none (AWS's default).
const DEFAULT_SESSION_SECONDS: i64 = 3_600;

/// How many times a removal made by reconciliation checks on a deletion AWS left in progress, [`STATUS_PAUSE`]
/// apart, before it leaves it to the next run (AWS usually finishes one within seconds). Within the run's bound
/// on one provisioner call.
const STATUS_CHECKS: u32 = 3;

/// The pause between two checks of a deletion in progress during reconciliation.
const STATUS_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// An attempt that stopped short of an outcome fails with the engine's [`Failure`]: retried unless permanent.
type Step<T> = Result<T, Failure>;

/// The failed call `what` (of either client: they share the smithy runtime's error), classified by the one
/// classifier.
fn stop<E>(what: &str, e: &aws_sdk_ssoadmin::error::SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::fmt::Display + std::error::Error + 'static,
{
    let text = match e {
        aws_sdk_ssoadmin::error::SdkError::ServiceError(service) => describe(service.err()),
        other => other.to_string(),
    };
    Failure {
        class: classify(e),
        message: format!("{what}: {text}"),
        retry_after: None,
    }
}

type HttpResponse = aws_sdk_ssoadmin::config::http::HttpResponse;

/// The configuration of one resource's provisioner, read from its [`Provisioner::AwsIdentityCenter`].
struct Config<'a> {
    instance_arn: &'a str,
    identity_store_id: &'a str,
    target: IdentityCenterTarget,
    people: &'a std::collections::BTreeMap<String, String>,
    cut_sessions: bool,
}

impl<'a> Config<'a> {
    fn of(resource: &'a Resource) -> Step<Self> {
        let provisioner = &resource.provisioner;
        let Provisioner::AwsIdentityCenter {
            instance_arn,
            identity_store_id,
            people,
            cut_sessions,
            ..
        } = provisioner
        else {
            return Err(Failure::permanent(format!(
                "resource `{}` no longer has an IAM Identity Center provisioner",
                resource.id
            )));
        };
        let target = provisioner
            .identity_center_target()
            .map_err(Failure::permanent)?
            .ok_or_else(|| Failure::permanent("not an IAM Identity Center provisioner"))?;
        Ok(Self {
            instance_arn,
            identity_store_id,
            target,
            people,
            cut_sessions: *cut_sessions,
        })
    }
}

/// The IAM Identity Center clients. Built from the SDK configuration without calling anything: a cold start
/// makes no extra call, and a deployment with no such resource never reaches AWS through them.
#[derive(Clone)]
pub struct IdentityCenter {
    sso: aws_sdk_ssoadmin::Client,
    store: aws_sdk_identitystore::Client,
    clock: Arc<dyn Clock>,
}

impl IdentityCenter {
    pub fn new(sdk: &aws_config::SdkConfig, clock: Arc<dyn Clock>) -> Self {
        Self::from_clients(
            aws_sdk_ssoadmin::Client::new(sdk),
            aws_sdk_identitystore::Client::new(sdk),
            clock,
        )
    }

    /// Over clients built elsewhere (tests point them at a proxy).
    pub fn from_clients(
        sso: aws_sdk_ssoadmin::Client,
        store: aws_sdk_identitystore::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { sso, store, clock }
    }

    /// Grants or removes `grant`'s access once (the engine retries).
    pub async fn apply(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        finish(self.attempt(resource, action, grant).await)
    }

    /// Checks once on an account assignment request an earlier call left in progress.
    pub async fn poll(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
        status_url: &str,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        finish(self.check(resource, action, grant, status_url).await)
    }

    /// Takes `grant`'s session cut (and every expired one) out of the permission set's inline policy and
    /// re-provisions it; done when there is none. Group memberships never cut sessions.
    pub async fn end_session_cut(
        &self,
        resource: &Resource,
        grant: &Grant,
    ) -> Result<(), ProvisionError> {
        self.lift(resource, grant).await.map_err(ProvisionError)
    }

    /// Converges the resource's account assignment on who should hold it (see the module's "Reconciliation"):
    /// one paged `ListAccountAssignments`; then, only when someone holds it, one `GetUserId` per e-mail of
    /// `call` the `people` mapping does not name; then a deletion (with its status checks and a last list) per
    /// assignment that outlived its grant. `Err` when the assignments or a user could not be read: nothing was
    /// removed. A failed removal is in [`Convergence::failures`]; the others go on.
    pub async fn reconcile(
        &self,
        resource: &Resource,
        call: &ReconcileCall<'_>,
    ) -> Result<Convergence, ProvisionError> {
        self.converge(resource, call).await.map_err(ProvisionError)
    }

    async fn converge(&self, resource: &Resource, call: &ReconcileCall<'_>) -> Step<Convergence> {
        let config = Config::of(resource)?;
        let IdentityCenterTarget::AccountAssignment {
            account_id,
            permission_set_arn,
        } = &config.target
        else {
            return Ok(Convergence::default());
        };
        let (users, groups) = self
            .assignments(&config, account_id, permission_set_arn)
            .await?;
        // Ticketbound assigns users only: a group holding the permission set is somebody else's.
        let mut found = Convergence {
            unmanaged: groups,
            ..Convergence::default()
        };
        if users.is_empty() {
            found.missing = call.provisioned.to_vec();
            return Ok(found);
        }
        let mut ids: BTreeMap<String, Option<String>> = BTreeMap::new();
        for email in call
            .principals
            .iter()
            .chain(call.ended.iter().map(|holder| &holder.requester))
        {
            let email = email.to_lowercase();
            if let std::collections::btree_map::Entry::Vacant(entry) = ids.entry(email) {
                let user = self.find_user(&config, entry.key()).await?;
                entry.insert(user);
            }
        }
        let user_of = |email: &str| ids.get(&email.to_lowercase()).cloned().flatten();
        let active: BTreeSet<String> = call.principals.iter().filter_map(|p| user_of(p)).collect();
        found.missing = call
            .provisioned
            .iter()
            .filter(|email| user_of(email).is_none_or(|user| !users.contains(&user)))
            .cloned()
            .collect();
        // `ended` holds each requester once, with their last ended grant.
        let ours: BTreeMap<String, &EndedHolder> = call
            .ended
            .iter()
            .filter_map(|holder| user_of(&holder.requester).map(|user| (user, holder)))
            .collect();
        for user in &users {
            if active.contains(user) {
                continue;
            }
            let Some(holder) = ours.get(user) else {
                found.unmanaged += 1;
                continue;
            };
            match self
                .remove_again(&config, account_id, permission_set_arn, user)
                .await
            {
                Ok(()) => found.removed.push(RemovedAgain {
                    grant_id: holder.grant_id.clone(),
                    principal_id: user.clone(),
                }),
                Err(failure) => found.failures.push(failure),
            }
        }
        Ok(found)
    }

    /// The users (each once: AWS may list one twice) and the number of groups assigned the permission set in
    /// the account, every page.
    async fn assignments(
        &self,
        config: &Config<'_>,
        account_id: &str,
        permission_set_arn: &str,
    ) -> Step<(BTreeSet<String>, usize)> {
        let mut users = BTreeSet::new();
        let mut groups = BTreeSet::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .sso
                .list_account_assignments()
                .instance_arn(config.instance_arn)
                .account_id(account_id)
                .permission_set_arn(permission_set_arn)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| stop("ListAccountAssignments", &e))?;
            for assignment in page.account_assignments() {
                let Some(principal) = assignment.principal_id() else {
                    continue;
                };
                if assignment.principal_type() == Some(&PrincipalType::User) {
                    users.insert(principal.to_owned());
                } else {
                    groups.insert(principal.to_owned());
                }
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => return Ok((users, groups.len())),
            }
        }
    }

    /// Asks IAM Identity Center to delete `user`'s assignment of the permission set in the account: `done` when
    /// it is deleted or was already gone, `Accepted` with the status token while the deletion is in progress.
    async fn delete_assignment(
        &self,
        config: &Config<'_>,
        account_id: &str,
        permission_set_arn: &str,
        user: &str,
        done: ProvisionOutcome,
    ) -> Step<ProvisionOutcome> {
        let deleted = self
            .sso
            .delete_account_assignment()
            .instance_arn(config.instance_arn)
            .target_id(account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(user)
            .send()
            .await;
        match deleted {
            Ok(out) => status_outcome(
                out.account_assignment_deletion_status(),
                ProvisionAction::Revoke,
                done,
            ),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(done),
            Err(e) => Err(stop("DeleteAccountAssignment", &e)),
        }
    }

    /// Deletes `user`'s assignment that outlived its grant, checks a deletion left in progress up to
    /// [`STATUS_CHECKS`] times, and looks once more that it is gone: done only when it is.
    async fn remove_again(
        &self,
        config: &Config<'_>,
        account_id: &str,
        permission_set_arn: &str,
        user: &str,
    ) -> Step<()> {
        // Gone meanwhile is done too (the removal it outlived may have landed after all).
        let mut outcome = self
            .delete_assignment(
                config,
                account_id,
                permission_set_arn,
                user,
                ProvisionOutcome::done(),
            )
            .await?;
        let mut checks = 0;
        while let ProvisionOutcome::Accepted { status_url } = &outcome {
            if checks == STATUS_CHECKS {
                return Err(Failure::retryable(
                    "IAM Identity Center is still deleting the assignment; the next run looks again",
                ));
            }
            checks += 1;
            tokio::time::sleep(STATUS_PAUSE).await;
            let request_id = status_url
                .strip_prefix(STATUS_TOKEN_PREFIX)
                .unwrap_or_default();
            let out = self
                .sso
                .describe_account_assignment_deletion_status()
                .instance_arn(config.instance_arn)
                .account_assignment_deletion_request_id(request_id)
                .send()
                .await
                .map_err(|e| stop("DescribeAccountAssignmentDeletionStatus", &e))?;
            outcome = status_outcome(
                out.account_assignment_deletion_status(),
                ProvisionAction::Revoke,
                ProvisionOutcome::done(),
            )?;
        }
        if let ProvisionOutcome::Failed(reason) = outcome {
            return Err(Failure::permanent(reason));
        }
        self.gone(config, account_id, permission_set_arn, user)
            .await
    }

    /// Pushes the permission set's inline policy to every account it is provisioned in: a policy change reaches
    /// the accounts' roles only through this.
    async fn reprovision(&self, config: &Config<'_>, permission_set_arn: &str) -> Step<()> {
        self.sso
            .provision_permission_set()
            .instance_arn(config.instance_arn)
            .permission_set_arn(permission_set_arn)
            .target_type(ProvisionTargetType::AllProvisionedAccounts)
            .send()
            .await
            .map_err(|e| stop("ProvisionPermissionSet", &e))?;
        Ok(())
    }

    async fn lift(&self, resource: &Resource, grant: &Grant) -> Step<()> {
        let config = Config::of(resource)?;
        let IdentityCenterTarget::AccountAssignment {
            permission_set_arn, ..
        } = &config.target
        else {
            return Ok(());
        };
        let current = self
            .sso
            .get_inline_policy_for_permission_set()
            .instance_arn(config.instance_arn)
            .permission_set_arn(permission_set_arn)
            .send()
            .await
            .map_err(|e| stop("GetInlinePolicyForPermissionSet", &e))?;
        let current = current.inline_policy().unwrap_or_default();
        if current.trim().is_empty() {
            return Ok(());
        }
        match without_cut(current, &grant.id, self.clock.now()).map_err(Failure::permanent)? {
            Some(policy) if policy == current => {}
            Some(policy) => {
                self.sso
                    .put_inline_policy_to_permission_set()
                    .instance_arn(config.instance_arn)
                    .permission_set_arn(permission_set_arn)
                    .inline_policy(policy)
                    .send()
                    .await
                    .map_err(|e| stop("PutInlinePolicyToPermissionSet", &e))?;
            }
            // Nothing left: IAM keeps no policy without a statement.
            None => {
                self.sso
                    .delete_inline_policy_from_permission_set()
                    .instance_arn(config.instance_arn)
                    .permission_set_arn(permission_set_arn)
                    .send()
                    .await
                    .map_err(|e| stop("DeleteInlinePolicyFromPermissionSet", &e))?;
            }
        }
        // Re-provisioned every time, as when the cut was placed: an earlier attempt may have changed the policy
        // and failed before this.
        self.reprovision(&config, permission_set_arn).await
    }

    async fn attempt(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
    ) -> Step<ProvisionOutcome> {
        let config = Config::of(resource)?;
        let user = self.user_id(&config, &grant.requester).await?;
        match (&config.target, action) {
            (
                IdentityCenterTarget::AccountAssignment {
                    account_id,
                    permission_set_arn,
                },
                ProvisionAction::Grant,
            ) => {
                if self
                    .assigned(&config, account_id, permission_set_arn, &user)
                    .await?
                {
                    return Ok(ProvisionOutcome::done());
                }
                let created = self
                    .sso
                    .create_account_assignment()
                    .instance_arn(config.instance_arn)
                    .target_id(account_id)
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(permission_set_arn)
                    .principal_type(PrincipalType::User)
                    .principal_id(&user)
                    .send()
                    .await;
                match created {
                    Ok(out) => status_outcome(
                        out.account_assignment_creation_status(),
                        ProvisionAction::Grant,
                        ProvisionOutcome::done(),
                    ),
                    Err(e) if e.code() == Some("ConflictException") => {
                        // Another write on the same assignment: done once it is there, tried again if not.
                        if self
                            .assigned(&config, account_id, permission_set_arn, &user)
                            .await?
                        {
                            Ok(ProvisionOutcome::done())
                        } else {
                            // A conflict: the engine tries again.
                            Err(stop("CreateAccountAssignment", &e))
                        }
                    }
                    Err(e) => Err(stop("CreateAccountAssignment", &e)),
                }
            }
            (
                IdentityCenterTarget::AccountAssignment {
                    account_id,
                    permission_set_arn,
                },
                ProvisionAction::Revoke,
            ) => {
                let ended_at = grant.ended_at.unwrap_or_else(|| self.clock.now());
                let removed = self
                    .removal_receipt(&config, permission_set_arn, &user, grant, ended_at)
                    .await?;
                if !self
                    .assigned(&config, account_id, permission_set_arn, &user)
                    .await?
                {
                    return Ok(ProvisionOutcome::Done(removed));
                }
                let outcome = self
                    .delete_assignment(
                        &config,
                        account_id,
                        permission_set_arn,
                        &user,
                        ProvisionOutcome::Done(removed),
                    )
                    .await?;
                if let ProvisionOutcome::Done(_) = outcome {
                    self.gone(&config, account_id, permission_set_arn, &user)
                        .await?;
                }
                Ok(outcome)
            }
            (IdentityCenterTarget::GroupMembership { group_id }, ProvisionAction::Grant) => {
                if self.membership(&config, group_id, &user).await?.is_some() {
                    return Ok(ProvisionOutcome::done());
                }
                let created = self
                    .store
                    .create_group_membership()
                    .identity_store_id(config.identity_store_id)
                    .group_id(group_id)
                    .member_id(MemberId::UserId(user.clone()))
                    .send()
                    .await;
                match created {
                    Ok(_) => Ok(ProvisionOutcome::done()),
                    // The membership is already there.
                    Err(e) if e.code() == Some("ConflictException") => Ok(ProvisionOutcome::done()),
                    Err(e) => Err(stop("CreateGroupMembership", &e)),
                }
            }
            (IdentityCenterTarget::GroupMembership { group_id }, ProvisionAction::Revoke) => {
                // A group's sessions come from whatever permission sets it is assigned: they run out on their
                // own, and how long they may last is not this provisioner's to know.
                let removed = ProvisionReceipt {
                    access_removed: Some(true),
                    sessions: Some(SessionsOutcome::WillExpire),
                    residual_until: None,
                    cut_until: None,
                };
                let Some(membership) = self.membership(&config, group_id, &user).await? else {
                    return Ok(ProvisionOutcome::Done(removed));
                };
                let deleted = self
                    .store
                    .delete_group_membership()
                    .identity_store_id(config.identity_store_id)
                    .membership_id(membership)
                    .send()
                    .await;
                match deleted {
                    Ok(_) => Ok(ProvisionOutcome::Done(removed)),
                    Err(e) if e.code() == Some("ResourceNotFoundException") => {
                        Ok(ProvisionOutcome::Done(removed))
                    }
                    Err(e) => Err(stop("DeleteGroupMembership", &e)),
                }
            }
        }
    }

    async fn check(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
        status_url: &str,
    ) -> Step<ProvisionOutcome> {
        let config = Config::of(resource)?;
        let IdentityCenterTarget::AccountAssignment {
            permission_set_arn, ..
        } = &config.target
        else {
            return Err(Failure::permanent(
                "a group membership has no request status to check",
            ));
        };
        let Some(request_id) = status_url
            .strip_prefix(STATUS_TOKEN_PREFIX)
            .filter(|id| !id.is_empty())
        else {
            return Err(Failure::permanent(format!(
                "`{status_url}` is not an IAM Identity Center request"
            )));
        };
        match action {
            ProvisionAction::Grant => {
                let out = self
                    .sso
                    .describe_account_assignment_creation_status()
                    .instance_arn(config.instance_arn)
                    .account_assignment_creation_request_id(request_id)
                    .send()
                    .await
                    .map_err(|e| stop("DescribeAccountAssignmentCreationStatus", &e))?;
                status_outcome(
                    out.account_assignment_creation_status(),
                    action,
                    ProvisionOutcome::done(),
                )
            }
            ProvisionAction::Revoke => {
                let out = self
                    .sso
                    .describe_account_assignment_deletion_status()
                    .instance_arn(config.instance_arn)
                    .account_assignment_deletion_request_id(request_id)
                    .send()
                    .await
                    .map_err(|e| stop("DescribeAccountAssignmentDeletionStatus", &e))?;
                let status = out.account_assignment_deletion_status();
                if !matches!(
                    status.and_then(AccountAssignmentOperationStatus::status),
                    Some(StatusValues::Succeeded)
                ) {
                    return status_outcome(status, action, ProvisionOutcome::done());
                }
                // Removed: what the grant records is the same as for a removal done at once (the cut, when
                // asked for, was placed before the deletion and is placed again if it was pruned since).
                let user = self.user_id(&config, &grant.requester).await?;
                if let IdentityCenterTarget::AccountAssignment { account_id, .. } = &config.target {
                    self.gone(&config, account_id, permission_set_arn, &user)
                        .await?;
                }
                let ended_at = grant.ended_at.unwrap_or_else(|| self.clock.now());
                let removed = self
                    .removal_receipt(&config, permission_set_arn, &user, grant, ended_at)
                    .await?;
                Ok(ProvisionOutcome::Done(removed))
            }
        }
    }

    /// The requester's identity store user id: the resource's `people` mapping, else the user whose e-mail it
    /// is. Nobody found fails the call, naming the e-mail and the way to fix it.
    async fn user_id(&self, config: &Config<'_>, email: &str) -> Step<String> {
        self.find_user(config, email).await?.ok_or_else(|| {
            Failure::permanent(format!(
                "no IAM Identity Center user has the e-mail {} in identity store {}; add the user to the resource's `people` mapping",
                email.to_lowercase(),
                config.identity_store_id
            ))
        })
    }

    /// The identity store user id of the person with `email`: the resource's `people` mapping, else the user
    /// whose e-mail it is; `None` when there is none.
    async fn find_user(&self, config: &Config<'_>, email: &str) -> Step<Option<String>> {
        let email = email.to_lowercase();
        if let Some(user) = config.people.get(&email) {
            return Ok(Some(user.clone()));
        }
        let attribute = UniqueAttribute::builder()
            .attribute_path("emails.value")
            .attribute_value(aws_smithy_types::Document::String(email.clone()))
            .build()
            .map_err(|e| Failure::permanent(format!("finding the user: {e}")))?;
        let found = self
            .store
            .get_user_id()
            .identity_store_id(config.identity_store_id)
            .alternate_identifier(AlternateIdentifier::UniqueAttribute(attribute))
            .send()
            .await;
        match found {
            Ok(out) => Ok(Some(out.user_id().to_owned())),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(stop("GetUserId", &e)),
        }
    }

    /// Whether `user` holds the permission set in the account now (the one paged listing
    /// [`Self::assignments`] reads).
    async fn assigned(
        &self,
        config: &Config<'_>,
        account_id: &str,
        permission_set_arn: &str,
        user: &str,
    ) -> Step<bool> {
        let (users, _) = self
            .assignments(config, account_id, permission_set_arn)
            .await?;
        Ok(users.contains(user))
    }

    /// A failed attempt when `user` still holds the permission set after a deletion that succeeded (one made
    /// again meanwhile, or a second copy): the next attempt deletes again, so a removal is never recorded
    /// while the access is still there.
    async fn gone(
        &self,
        config: &Config<'_>,
        account_id: &str,
        permission_set_arn: &str,
        user: &str,
    ) -> Step<()> {
        if self
            .assigned(config, account_id, permission_set_arn, user)
            .await?
        {
            return Err(Failure::retryable(
                "the user still holds the assignment after its deletion succeeded; deleting again",
            ));
        }
        Ok(())
    }

    /// The id of `user`'s membership of `group_id`, if any.
    async fn membership(
        &self,
        config: &Config<'_>,
        group_id: &str,
        user: &str,
    ) -> Step<Option<String>> {
        let mut next: Option<String> = None;
        loop {
            let page = self
                .store
                .list_group_memberships_for_member()
                .identity_store_id(config.identity_store_id)
                .member_id(MemberId::UserId(user.to_owned()))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| stop("ListGroupMembershipsForMember", &e))?;
            if let Some(found) = page
                .group_memberships()
                .iter()
                .find(|m| m.group_id() == Some(group_id))
            {
                return Ok(Some(found.membership_id().to_owned()));
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    /// What a removal of an account assignment leaves, recorded on the grant: with `cut_sessions`, the deny
    /// for the user's earlier sessions is placed first (sessions `terminated`), or, when the policy has no room
    /// for it, they `will_expire` like without it, at the end plus the permission set's session duration.
    async fn removal_receipt(
        &self,
        config: &Config<'_>,
        permission_set_arn: &str,
        user: &str,
        grant: &Grant,
        ended_at: OffsetDateTime,
    ) -> Step<ProvisionReceipt> {
        let session = self.session_duration(config, permission_set_arn).await?;
        let residual_until = ended_at + session;
        if config.cut_sessions
            && self
                .cut_sessions(
                    config,
                    permission_set_arn,
                    user,
                    grant,
                    ended_at,
                    residual_until,
                )
                .await?
        {
            return Ok(ProvisionReceipt {
                access_removed: Some(true),
                sessions: Some(SessionsOutcome::Terminated),
                residual_until: None,
                cut_until: Some(residual_until),
            });
        }
        Ok(ProvisionReceipt {
            access_removed: Some(true),
            sessions: Some(SessionsOutcome::WillExpire),
            residual_until: Some(residual_until),
            cut_until: None,
        })
    }

    /// The permission set's `SessionDuration` (AWS's default of an hour when it names none).
    async fn session_duration(
        &self,
        config: &Config<'_>,
        permission_set_arn: &str,
    ) -> Step<time::Duration> {
        let out = self
            .sso
            .describe_permission_set()
            .instance_arn(config.instance_arn)
            .permission_set_arn(permission_set_arn)
            .send()
            .await
            .map_err(|e| stop("DescribePermissionSet", &e))?;
        let seconds = out
            .permission_set()
            .and_then(|p| p.session_duration())
            .and_then(|d| IsoDuration::parse(d).ok())
            .map_or(DEFAULT_SESSION_SECONDS, |d| d.seconds());
        Ok(time::Duration::seconds(seconds))
    }

    /// Places the deny of `user`'s sessions issued before `ended_at` in the permission set's inline policy and
    /// re-provisions it; `false` (logged) when the policy has no room for it even after pruning the expired cuts,
    /// or is not JSON: the removal goes on, and the grant records that sessions will expire.
    async fn cut_sessions(
        &self,
        config: &Config<'_>,
        permission_set_arn: &str,
        user: &str,
        grant: &Grant,
        ended_at: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Step<bool> {
        let current = self
            .sso
            .get_inline_policy_for_permission_set()
            .instance_arn(config.instance_arn)
            .permission_set_arn(permission_set_arn)
            .send()
            .await
            .map_err(|e| stop("GetInlinePolicyForPermissionSet", &e))?;
        let current = current.inline_policy().unwrap_or_default();
        let now = self.clock.now();
        let placed = match with_cut(
            current,
            &cut_statement(&grant.id, user, ended_at, until),
            now,
        ) {
            Ok(placed) => placed,
            // Never overwritten; the removal itself goes on.
            Err(reason) => {
                tracing::warn!(grant = %grant.id, permission_set = %permission_set_arn, %reason, "no session cut placed; sessions will expire");
                return Ok(false);
            }
        };
        let Some(policy) = placed else {
            tracing::warn!(
                grant = %grant.id,
                permission_set = %permission_set_arn,
                "the permission set's inline policy has no room for another session cut; sessions will expire"
            );
            return Ok(false);
        };
        if policy != current {
            self.sso
                .put_inline_policy_to_permission_set()
                .instance_arn(config.instance_arn)
                .permission_set_arn(permission_set_arn)
                .inline_policy(&policy)
                .send()
                .await
                .map_err(|e| stop("PutInlinePolicyToPermissionSet", &e))?;
        }
        // Re-provisioned every time (the put may have landed on an attempt that failed after it): the policy
        // reaches the accounts' roles only through it.
        self.reprovision(config, permission_set_arn).await?;
        Ok(true)
    }
}

/// An attempt's result as the engine reads it.
fn finish(step: Step<ProvisionOutcome>) -> Result<ProvisionOutcome, ProvisionError> {
    step.map_err(ProvisionError)
}

/// What an account assignment request's status means: `SUCCEEDED` is `done`, `FAILED` failed with AWS's
/// reason, anything else still in progress under its request id.
fn status_outcome(
    status: Option<&AccountAssignmentOperationStatus>,
    action: ProvisionAction,
    done: ProvisionOutcome,
) -> Step<ProvisionOutcome> {
    let Some(status) = status else {
        return Err(Failure::retryable(
            "IAM Identity Center answered without a request status",
        ));
    };
    match status.status() {
        Some(StatusValues::Succeeded) => Ok(done),
        Some(StatusValues::Failed) => {
            let reason: String = status
                .failure_reason()
                .unwrap_or("no reason given")
                .chars()
                .take(500)
                .collect();
            Ok(ProvisionOutcome::Failed(format!(
                "IAM Identity Center reports the {} failed: {reason}",
                action.as_str()
            )))
        }
        _ => match status.request_id() {
            Some(id) if !id.is_empty() => Ok(ProvisionOutcome::Accepted {
                status_url: format!("{STATUS_TOKEN_PREFIX}{id}"),
            }),
            _ => Err(Failure::retryable(
                "IAM Identity Center answered in progress without a request id",
            )),
        },
    }
}

/// `ended_at` as `aws:TokenIssueTime` compares it: whole seconds, rounded up so a session issued earlier in the
/// same second is still cut.
fn token_time(ended_at: OffsetDateTime) -> String {
    let utc = ended_at.to_offset(time::UtcOffset::UTC);
    let whole = utc.replace_nanosecond(0).unwrap_or(utc);
    let up = if whole < utc {
        whole + time::Duration::SECOND
    } else {
        whole
    };
    up.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The statement that cuts `user`'s sessions issued before `ended_at`. Its `Sid` names the grant and when it
/// can go (`until`, when no such session can still be valid); it applies to that user only, so other users'
/// sessions of the same permission set are never affected.
pub fn cut_statement(
    grant_id: &str,
    user: &str,
    ended_at: OffsetDateTime,
    until: OffsetDateTime,
) -> Value {
    let grant_id: String = grant_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    json!({
        "Sid": format!("{CUT_SID_PREFIX}{grant_id}Until{}", until.unix_timestamp()),
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "DateLessThan": {"aws:TokenIssueTime": token_time(ended_at)},
            "StringEquals": {"identitystore:userId": user},
        },
    })
}

/// When a session cut statement can go, read from its `Sid`; `None` for every other statement.
fn cut_until(statement: &Value) -> Option<i64> {
    let sid = statement.get("Sid")?.as_str()?;
    let rest = sid.strip_prefix(CUT_SID_PREFIX)?;
    let (_, until) = rest.rsplit_once("Until")?;
    until.parse().ok()
}

/// `policy` (an inline policy as the permission set holds it, possibly empty) with the session cut `cut` added
/// (replacing one of the same `Sid`) and every cut whose time has passed (`now`) taken out; the operator's own
/// statements are kept as they are. `Ok(None)` when it would not fit in [`MAX_INLINE_POLICY_CHARS`] even after
/// that; an inline policy that is not JSON is an error (never overwritten).
pub fn with_cut(policy: &str, cut: &Value, now: OffsetDateTime) -> Result<Option<String>, String> {
    let mut document: Value = if policy.trim().is_empty() {
        json!({"Version": "2012-10-17", "Statement": []})
    } else {
        serde_json::from_str(policy).map_err(|_| {
            "the permission set's inline policy is not JSON; it was left as it is".to_owned()
        })?
    };
    let Some(object) = document.as_object_mut() else {
        return Err("the permission set's inline policy is not a JSON object".into());
    };
    let statements = match object.remove("Statement") {
        Some(Value::Array(list)) => list,
        Some(single @ Value::Object(_)) => vec![single],
        None => Vec::new(),
        Some(_) => {
            return Err("the permission set's inline policy has an unreadable Statement".into());
        }
    };
    let sid = cut.get("Sid");
    let mut kept: Vec<Value> = statements
        .into_iter()
        .filter(|s| s.get("Sid") != sid)
        .filter(|s| cut_until(s).is_none_or(|until| until > now.unix_timestamp()))
        .collect();
    kept.push(cut.clone());
    object.insert("Statement".into(), Value::Array(kept));
    object
        .entry("Version")
        .or_insert_with(|| Value::String("2012-10-17".into()));
    let text = document.to_string();
    Ok((text.chars().count() <= MAX_INLINE_POLICY_CHARS).then_some(text))
}

/// `policy` without `grant_id`'s session cut and without every cut whose time has passed (`now`); the
/// operator's own statements are kept. `None` when no statement is left; an inline policy that is not JSON is an
/// error (never overwritten).
pub fn without_cut(
    policy: &str,
    grant_id: &str,
    now: OffsetDateTime,
) -> Result<Option<String>, String> {
    let mut document: Value = serde_json::from_str(policy).map_err(|_| {
        "the permission set's inline policy is not JSON; it was left as it is".to_owned()
    })?;
    let Some(object) = document.as_object_mut() else {
        return Err("the permission set's inline policy is not a JSON object".into());
    };
    let statements = match object.remove("Statement") {
        Some(Value::Array(list)) => list,
        Some(single @ Value::Object(_)) => vec![single],
        None => Vec::new(),
        Some(_) => {
            return Err("the permission set's inline policy has an unreadable Statement".into());
        }
    };
    let own: String = grant_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let own = format!("{CUT_SID_PREFIX}{own}Until");
    let kept: Vec<Value> = statements
        .into_iter()
        .filter(|s| {
            !s.get("Sid")
                .and_then(Value::as_str)
                .is_some_and(|sid| sid.starts_with(&own))
        })
        .filter(|s| cut_until(s).is_none_or(|until| until > now.unix_timestamp()))
        .collect();
    if kept.is_empty() {
        return Ok(None);
    }
    object.insert("Statement".into(), Value::Array(kept));
    Ok(Some(document.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_cut_denies_one_users_earlier_sessions_and_keeps_the_operators_statements() {
        let own = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Ops","Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let ended = datetime!(2026-12-05 10:02:00.5 UTC);
        let cut = cut_statement("01JD3AAA", "u-1", ended, ended + time::Duration::HOUR);
        let policy: Value =
            serde_json::from_str(&with_cut(own, &cut, ended).unwrap().unwrap()).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0]["Sid"], "Ops");
        assert_eq!(
            statements[1]["Condition"],
            json!({"DateLessThan": {"aws:TokenIssueTime": "2026-12-05T10:02:01Z"},
                   "StringEquals": {"identitystore:userId": "u-1"}})
        );
        // Placing the same cut again changes nothing.
        let again = with_cut(&policy.to_string(), &cut, ended).unwrap().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), policy);
    }

    #[test]
    fn expired_cuts_are_pruned_first_and_a_full_policy_takes_no_more() {
        let start = datetime!(2026-12-05 10:00:00 UTC);
        let mut policy = String::new();
        // Many cuts, one a minute, each valid for an hour after its end.
        let mut placed = 0;
        loop {
            let ended = start + time::Duration::minutes(placed);
            let cut = cut_statement(
                &format!("01JD3G{placed:04}"),
                &format!("user-{placed:04}"),
                ended,
                ended + time::Duration::HOUR,
            );
            match with_cut(&policy, &cut, ended).unwrap() {
                Some(next) => {
                    assert!(next.chars().count() <= MAX_INLINE_POLICY_CHARS);
                    policy = next;
                    placed += 1;
                }
                None => break,
            }
        }
        assert!(placed > 10, "only {placed} cuts fit");
        let full: Value = serde_json::from_str(&policy).unwrap();
        let count = full["Statement"].as_array().unwrap().len();
        // An hour later the oldest have expired: a new cut fits, and only expired ones made room.
        let later = start + time::Duration::minutes(placed + 60);
        let cut = cut_statement("01JD3NEW", "user-new", later, later + time::Duration::HOUR);
        let pruned: Value =
            serde_json::from_str(&with_cut(&policy, &cut, later).unwrap().unwrap()).unwrap();
        let left = pruned["Statement"].as_array().unwrap();
        assert!(left.len() <= count);
        assert!(
            left.iter()
                .filter_map(cut_until)
                .all(|until| until > later.unix_timestamp()),
            "every cut still valid is kept, every expired one pruned"
        );
    }

    #[test]
    fn ending_a_cut_takes_out_that_grants_statement_only_and_the_expired_ones() {
        let ended = datetime!(2026-12-05 10:00:00 UTC);
        let hour = time::Duration::HOUR;
        let own = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Ops","Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let mut policy = own.to_owned();
        for (grant, user, at) in [("01A", "u-1", ended), ("01B", "u-2", ended + hour)] {
            let cut = cut_statement(grant, user, at, at + hour);
            policy = with_cut(&policy, &cut, at).unwrap().unwrap();
        }
        let left: Value =
            serde_json::from_str(&without_cut(&policy, "01A", ended + hour).unwrap().unwrap())
                .unwrap();
        let sids: Vec<&str> = left["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert_eq!(sids.len(), 2, "{left}");
        assert_eq!(sids[0], "Ops");
        assert!(sids[1].starts_with("TicketboundCut01BUntil"), "{left}");
        // Two hours later 01B's has expired too; with no statement of the operator's, nothing is left.
        let only_cuts = without_cut(&policy, "01A", ended + hour * 3)
            .unwrap()
            .unwrap();
        assert!(!only_cuts.contains("TicketboundCut"), "{only_cuts}");
        let bare = with_cut("", &cut_statement("01C", "u-3", ended, ended + hour), ended)
            .unwrap()
            .unwrap();
        assert_eq!(without_cut(&bare, "01C", ended).unwrap(), None);
    }

    #[test]
    fn an_inline_policy_that_is_not_json_is_never_overwritten() {
        let ended = datetime!(2026-12-05 10:00:00 UTC);
        let cut = cut_statement("01JD3AAA", "u-1", ended, ended);
        assert!(with_cut("not json", &cut, ended).is_err());
    }

    #[test]
    fn request_statuses_read_as_done_failed_or_still_accepted() {
        let status = |s: StatusValues, reason: Option<&str>| {
            AccountAssignmentOperationStatus::builder()
                .status(s)
                .request_id("req-1")
                .set_failure_reason(reason.map(str::to_owned))
                .build()
        };
        assert!(matches!(
            status_outcome(
                Some(&status(StatusValues::Succeeded, None)),
                ProvisionAction::Grant,
                ProvisionOutcome::done()
            ),
            Ok(ProvisionOutcome::Done(_))
        ));
        assert!(matches!(
            status_outcome(Some(&status(StatusValues::Failed, Some("Permission set not found"))), ProvisionAction::Grant, ProvisionOutcome::done()),
            Ok(ProvisionOutcome::Failed(reason)) if reason.ends_with("Permission set not found")
        ));
        assert!(matches!(
            status_outcome(Some(&status(StatusValues::InProgress, None)), ProvisionAction::Revoke, ProvisionOutcome::done()),
            Ok(ProvisionOutcome::Accepted { status_url }) if status_url == "aws-sso:request/req-1"
        ));
    }
}
