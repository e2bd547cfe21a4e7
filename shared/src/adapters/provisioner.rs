//! Provisioners (DESIGN §7): the signed `webhook` call, `none`, and the dispatch to the built-in
//! `aws_identity_center` provisioner (`adapters/identity_center.rs`, with the `aws` feature) where the deployment
//! has it.
//!
//! A webhook call is `POST <url>` with `{"action": "grant"|"revoke", "grant": {...}, "resource": {...},
//! "idempotency_key": "..."}` and the headers
//! `X-Ticketbound-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, `Idempotency-Key` and
//! `X-Ticketbound-Delivery`. The idempotency key ([`idempotency_key`]) is the same on every attempt of one
//! action on one grant, so the receiver can make a repeated call harmless: a call in flight when a process
//! dies is made again (at-least-once across crashes). It is in the body so the signature covers it; the
//! headers repeat it for receivers that de-duplicate before parsing (`X-Ticketbound-Delivery` was the name
//! before the key existed, kept for them). 2xx means done. Any other answer is classified by the engine's one HTTP
//! table (`domain/side_effect.rs`): 408, 429 (after its `Retry-After`) and 5xx are retried durably, 409 is a
//! conflict, retried the same way, and any other status (a 4xx, a redirect: they are not followed) fails the side
//! effect for good. A timeout or a connection error is a failed attempt retried durably.
//!
//! Contract v2 (the operator guide's provisioner section) adds, backward compatibly: `valid_until` on a grant
//! call; `reason`, `ended_at` and `sessions: {"terminate": true, "issued_before": <ended_at>}` on a revoke; a
//! 2xx body `{"access_removed", "sessions", "residual_until"}` that is recorded on the grant; and `202 Accepted`
//! with a status URL (`Location` or `{"status_url"}`, on the provisioner's own origin) that the engine checks
//! with a signed `GET` (the signature over `"<t>."`, an empty body) at its retry backoff until it says done or
//! failed. An empty 2xx (v1) is done, as before. A resource that sets `reconcile: true` also gets, on each
//! reconciliation run, `{"action": "reconcile", "resource", "principals", "at", "idempotency_key"}` signed the
//! same way: who should hold access now, so the endpoint can take away what a lost `revoke` left.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::side_effect::Failure;
use crate::domain::{Grant, Provisioner, Resource};
use crate::ports::{
    Clock, Convergence, ProvisionAction, ProvisionError, ProvisionOutcome, ProvisionReceipt,
    Provisioners, ReconcileCall,
};

type HmacSha256 = Hmac<Sha256>;

/// The signature header value for `body` sent at unix time `t`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The idempotency key of one action on one grant: `<grant id>-<action>`, the same on every attempt.
pub fn idempotency_key(grant_id: &str, action: ProvisionAction) -> String {
    format!("{grant_id}-{}", action.as_str())
}

/// Verifies an `X-Ticketbound-Signature` header the way a provisioner endpoint should: HMAC over `"<t>.<body>"`
/// compared in constant time, and `t` within `tolerance_seconds` of `now` (replay protection).
pub fn verify_signature_header(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    // `abs_diff`: a forged `t` near i64::MIN or MAX is out of the window, not an overflow.
    if i64::try_from(now.abs_diff(t))
        .ok()
        .is_none_or(|age| age > tolerance_seconds)
    {
        return false;
    }
    v1.iter().any(|candidate| {
        let mut mac =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(candidate).is_ok()
    })
}

/// Calls provisioners over HTTP (reqwest with rustls).
#[derive(Clone)]
pub struct HttpProvisioners {
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    /// The built-in IAM Identity Center provisioner, in deployments on AWS ([`Self::with_identity_center`]).
    #[cfg(feature = "aws")]
    identity_center: Option<super::identity_center::IdentityCenter>,
}

/// How long one provisioner call may take. Shorter than the retry lease, so attempts never overlap.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpProvisioners {
    pub fn new(clock: Arc<dyn Clock>, timeout: Duration) -> Result<Self, ProvisionError> {
        let client =
            super::tls::outbound_client(Some(timeout)).map_err(ProvisionError::retryable)?;
        Ok(Self {
            client,
            clock,
            timeout,
            #[cfg(feature = "aws")]
            identity_center: None,
        })
    }

    /// The same provisioners, also serving `aws_identity_center` resources through `identity_center`.
    #[cfg(feature = "aws")]
    #[must_use]
    pub fn with_identity_center(
        mut self,
        identity_center: super::identity_center::IdentityCenter,
    ) -> Self {
        self.identity_center = Some(identity_center);
        self
    }

    /// Whether this deployment serves `aws_identity_center` resources.
    fn has_identity_center(&self) -> bool {
        #[cfg(feature = "aws")]
        {
            self.identity_center.is_some()
        }
        #[cfg(not(feature = "aws"))]
        {
            false
        }
    }
}

/// Why an `aws_identity_center` resource's access cannot be set up here.
fn no_identity_center(resource: &Resource) -> ProvisionError {
    ProvisionError::retryable(format!(
        "resource `{}` uses the IAM Identity Center provisioner, which this deployment does not have",
        resource.id
    ))
}

/// A URL as it may appear in errors and logs: no query string (it may carry a token).
fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// The largest answer body read for its contract v2 fields; a longer one is read as saying nothing.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The JSON body of a call (contract v2: v1's fields plus `valid_until` on a grant and `reason`, `ended_at` and
/// the `sessions` directive on a revoke). Receivers that ignore unknown fields read it as v1.
pub fn call_body(resource: &Resource, action: ProvisionAction, grant: &Grant) -> serde_json::Value {
    let at = |t: Option<time::OffsetDateTime>| {
        t.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
    };
    let mut body = serde_json::json!({
        "action": action,
        "grant": grant,
        "resource": {"id": resource.id, "name": resource.name},
        "idempotency_key": idempotency_key(&grant.id, action),
    });
    match action {
        ProvisionAction::Grant => body["valid_until"] = at(grant.expires_at).into(),
        ProvisionAction::Revoke => {
            let ended_at = at(grant.ended_at);
            body["reason"] = serde_json::to_value(grant.end_reason).unwrap_or_default();
            body["ended_at"] = ended_at.clone().into();
            body["sessions"] = serde_json::json!({"terminate": true, "issued_before": ended_at});
        }
    }
    body
}

/// The idempotency key of one reconcile call: `<resource id>-reconcile-<unix seconds of at>`, the same if the
/// same run's call is repeated.
pub fn reconcile_key(resource_id: &str, at: time::OffsetDateTime) -> String {
    format!("{resource_id}-reconcile-{}", at.unix_timestamp())
}

/// The JSON body of a `reconcile` call: `{"action": "reconcile", "resource": {...}, "principals": [...], "at":
/// "...", "idempotency_key": "..."}`. `principals` are who should hold access at `at`, and nobody else.
pub fn reconcile_body(
    resource: &Resource,
    principals: &[String],
    at: time::OffsetDateTime,
) -> serde_json::Value {
    serde_json::json!({
        "action": "reconcile",
        "resource": {"id": resource.id, "name": resource.name},
        "principals": principals,
        "at": at.format(&time::format_description::well_known::Rfc3339).ok(),
        "idempotency_key": reconcile_key(&resource.id, at),
    })
}

/// Reads the contract v2 fields of a 2xx answer's body; an empty or non-JSON body (v1) reports nothing.
fn receipt(body: &serde_json::Value) -> ProvisionReceipt {
    ProvisionReceipt {
        access_removed: body
            .get("access_removed")
            .and_then(serde_json::Value::as_bool),
        sessions: body
            .get("sessions")
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        residual_until: body
            .get("residual_until")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            }),
        cut_until: None,
    }
}

/// Whether `candidate` has the scheme, host and port of `origin`: a status URL may only point back at the
/// provisioner that gave it, never make Ticketbound call (and sign a request to) somewhere else.
fn same_origin(origin: &url::Url, candidate: &url::Url) -> bool {
    origin.scheme() == candidate.scheme()
        && origin.host_str() == candidate.host_str()
        && origin.port_or_known_default() == candidate.port_or_known_default()
}

impl HttpProvisioners {
    /// Sends one signed request (a `POST` of `body`, or a `GET` of a status URL with an empty body) and reads the
    /// answer: its status, its `Location` header and its body as JSON (`Null` when empty or not JSON).
    async fn signed(
        &self,
        url: &str,
        secret: &str,
        key: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Option<String>, serde_json::Value), ProvisionError> {
        let t = self.clock.now().unix_timestamp();
        let payload = body.clone().unwrap_or_default();
        let request = match body {
            Some(body) => self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body),
            None => self.client.get(url),
        };
        let shown = display_url(url);
        let response = request
            .header(
                "x-ticketbound-signature",
                signature_header(secret, t, &payload),
            )
            .header("idempotency-key", key)
            .header("x-ticketbound-delivery", key)
            .send()
            .await
            .map_err(|e| {
                ProvisionError::retryable(if e.is_timeout() {
                    format!("{shown} did not answer within {:?}", self.timeout)
                } else if e.is_connect() {
                    format!("could not connect to {shown}")
                } else {
                    format!("the call to {shown} failed")
                })
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.unwrap_or_default();
        let json = if bytes.len() <= MAX_ANSWER_BYTES {
            serde_json::from_slice(&bytes).unwrap_or_default()
        } else {
            serde_json::Value::Null
        };
        // The engine's one HTTP table: 429, 408 and 5xx are tried again (after `Retry-After` when given), 409 is a
        // conflict (tried again), any other answer (4xx, a redirect) is refused for good.
        if let Some(failure) = Failure::from_http(
            status,
            retry_after.as_deref(),
            format!("{shown} answered HTTP {status}"),
        ) {
            return Err(ProvisionError(failure));
        }
        Ok((status, location, json))
    }

    /// What a 2xx answer to a call or a status check means (the contract in the operator guide): a 202 naming a
    /// status URL (`Location`, or `status_url` in the body) is accepted; a status body saying `failed` is a
    /// failure with its `reason`; `pending`/`in_progress` is still accepted; anything else is done, with what its
    /// body reported. A revoke answered `"access_removed": false` did not remove access: a failed attempt.
    fn judge(
        &self,
        provisioner_url: &str,
        current_status_url: Option<&str>,
        action: ProvisionAction,
        (status, location, body): (u16, Option<String>, serde_json::Value),
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let shown = display_url(provisioner_url);
        let named = location.or_else(|| {
            body.get("status_url")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        });
        let state = body.get("status").and_then(serde_json::Value::as_str);
        let still_working = status == 202 || matches!(state, Some("pending" | "in_progress"));
        if still_working && (named.is_some() || current_status_url.is_some()) {
            let origin = url::Url::parse(provisioner_url)
                .map_err(|_| ProvisionError::retryable("the provisioner URL is not valid"))?;
            let status_url = match named {
                Some(named) => origin.join(&named).map_err(|_| {
                    ProvisionError::retryable(format!(
                        "{shown} named a status URL that is not valid"
                    ))
                })?,
                None => url::Url::parse(current_status_url.unwrap_or_default()).map_err(|_| {
                    ProvisionError::retryable("the recorded status URL is not valid")
                })?,
            };
            if !same_origin(&origin, &status_url) {
                return Ok(ProvisionOutcome::Failed(format!(
                    "{shown} named a status URL on another origin ({}); only the provisioner's own origin is checked",
                    display_url(status_url.as_str())
                )));
            }
            return Ok(ProvisionOutcome::Accepted {
                status_url: status_url.to_string(),
            });
        }
        if state == Some("failed") {
            let reason = body
                .get("reason")
                .or_else(|| body.get("error"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no reason given");
            // The receiver's words, bounded: they end up on the grant and in logs.
            let reason: String = reason.chars().take(500).collect();
            return Ok(ProvisionOutcome::Failed(format!(
                "{shown} reports the {} failed: {reason}",
                action.as_str()
            )));
        }
        let receipt = receipt(&body);
        if action == ProvisionAction::Revoke && receipt.access_removed == Some(false) {
            return Err(ProvisionError::retryable(format!(
                "{shown} answered that access was not removed (access_removed: false)"
            )));
        }
        Ok(ProvisionOutcome::Done(receipt))
    }
}

#[async_trait]
impl Provisioners for HttpProvisioners {
    async fn apply(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        match &resource.provisioner {
            Provisioner::None => Ok(ProvisionOutcome::done()),
            Provisioner::Ticket { connection, .. } => Err(ProvisionError::retryable(format!(
                "the ticket provisioner (connection `{connection}`) is not available in this deployment"
            ))),
            Provisioner::AwsIdentityCenter { .. } => {
                #[cfg(feature = "aws")]
                if let Some(identity_center) = &self.identity_center {
                    return identity_center.apply(resource, action, grant).await;
                }
                Err(no_identity_center(resource))
            }
            Provisioner::Webhook { url, secret, .. } => {
                // The service loads the secret from the secret store before the call
                // (`service::SecretLoadingProvisioners`); a resource as stored does not hold it.
                let secret = secret.as_ref().ok_or_else(|| {
                    ProvisionError::retryable(format!(
                        "no signing secret was loaded for resource `{}`",
                        resource.id
                    ))
                })?;
                let key = idempotency_key(&grant.id, action);
                let body = serde_json::to_vec(&call_body(resource, action, grant))
                    .map_err(|e| ProvisionError::retryable(e.to_string()))?;
                let answer = self.signed(url, secret.expose(), &key, Some(body)).await?;
                self.judge(url, None, action, answer)
            }
        }
    }

    async fn poll(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
        status_url: &str,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        if let Provisioner::AwsIdentityCenter { .. } = &resource.provisioner {
            #[cfg(feature = "aws")]
            if let Some(identity_center) = &self.identity_center {
                return identity_center
                    .poll(resource, action, grant, status_url)
                    .await;
            }
            return Err(no_identity_center(resource));
        }
        let Provisioner::Webhook { url, secret, .. } = &resource.provisioner else {
            return Err(ProvisionError::retryable(
                "the resource's provisioner is no longer a webhook; its status cannot be checked",
            ));
        };
        // Checked again at every poll: the resource's URL may have changed since the call was accepted.
        let (Ok(origin), Ok(target)) = (url::Url::parse(url), url::Url::parse(status_url)) else {
            return Err(ProvisionError::retryable("the status URL is not valid"));
        };
        if !same_origin(&origin, &target) {
            return Ok(ProvisionOutcome::Failed(format!(
                "the status URL {} is no longer on the provisioner's origin",
                display_url(status_url)
            )));
        }
        let secret = secret.as_ref().ok_or_else(|| {
            ProvisionError::retryable(format!(
                "no signing secret was loaded for resource `{}`",
                resource.id
            ))
        })?;
        let key = idempotency_key(&grant.id, action);
        let answer = self.signed(status_url, secret.expose(), &key, None).await?;
        self.judge(url, Some(status_url), action, answer)
    }

    fn offers(&self, kind: &str) -> bool {
        kind != "aws_identity_center" || self.has_identity_center()
    }

    async fn reconcile(
        &self,
        resource: &Resource,
        call: &ReconcileCall<'_>,
    ) -> Result<Convergence, ProvisionError> {
        if let Provisioner::AwsIdentityCenter { .. } = &resource.provisioner {
            #[cfg(feature = "aws")]
            if let Some(identity_center) = &self.identity_center {
                return identity_center.reconcile(resource, call).await;
            }
            // Without the `aws` feature nothing above reads it.
            let _ = call;
            return Err(no_identity_center(resource));
        }
        let Provisioner::Webhook {
            url,
            secret,
            reconcile: true,
        } = &resource.provisioner
        else {
            return Ok(Convergence::default());
        };
        let secret = secret.as_ref().ok_or_else(|| {
            ProvisionError::retryable(format!(
                "no signing secret was loaded for resource `{}`",
                resource.id
            ))
        })?;
        let key = reconcile_key(&resource.id, call.at);
        let body = serde_json::to_vec(&reconcile_body(resource, call.principals, call.at))
            .map_err(|e| ProvisionError::retryable(e.to_string()))?;
        // Any 2xx is taken: the endpoint converges in its own time, and the next run sends the list again.
        self.signed(url, secret.expose(), &key, Some(body)).await?;
        Ok(Convergence::default())
    }

    async fn end_session_cut(
        &self,
        resource: &Resource,
        grant: &Grant,
    ) -> Result<(), ProvisionError> {
        if let Provisioner::AwsIdentityCenter { .. } = &resource.provisioner {
            #[cfg(feature = "aws")]
            if let Some(identity_center) = &self.identity_center {
                return identity_center.end_session_cut(resource, grant).await;
            }
            // Without the `aws` feature nothing above reads it.
            let _ = grant;
            return Err(no_identity_center(resource));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_replay() {
        let header = signature_header("topsecret-provisioner", 1_700_000_000, b"{\"a\":1}");
        assert!(verify_signature_header(
            "topsecret-provisioner",
            &header,
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
        assert!(!verify_signature_header(
            "topsecret-provisioner",
            &header,
            b"{\"a\":2}",
            1_700_000_010,
            300
        ));
        assert!(!verify_signature_header(
            "other-secret-value",
            &header,
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
        assert!(!verify_signature_header(
            "topsecret-provisioner",
            &header,
            b"{\"a\":1}",
            1_700_001_000,
            300
        ));
        assert!(!verify_signature_header(
            "topsecret-provisioner",
            "garbage",
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
    }

    #[test]
    fn the_idempotency_key_names_the_grant_and_the_action() {
        let id = "01JD3AAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            idempotency_key(id, ProvisionAction::Revoke),
            "01JD3AAAAAAAAAAAAAAAAAAAAA-revoke"
        );
        assert_ne!(
            idempotency_key(id, ProvisionAction::Grant),
            idempotency_key(id, ProvisionAction::Revoke)
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_i64_are_refused_without_overflowing() {
        for (t, now) in [(i64::MIN, i64::MAX), (i64::MIN, 0), (i64::MAX, i64::MIN)] {
            let header = signature_header("topsecret-provisioner", t, b"{}");
            assert!(!verify_signature_header(
                "topsecret-provisioner",
                &header,
                b"{}",
                now,
                300
            ));
        }
    }

    fn provisioners() -> HttpProvisioners {
        HttpProvisioners::new(Arc::new(crate::ports::SystemClock), DEFAULT_TIMEOUT).unwrap()
    }

    #[test]
    fn answers_are_read_by_the_v2_contract_and_a_v1_answer_is_done() {
        let p = provisioners();
        let url = "https://prov.example.com/hook?token=abc";
        let judge = |status: u16, location: Option<&str>, body: serde_json::Value| {
            p.judge(
                url,
                None,
                ProvisionAction::Revoke,
                (status, location.map(str::to_owned), body),
            )
        };
        assert_eq!(
            judge(204, None, serde_json::Value::Null).unwrap(),
            ProvisionOutcome::done()
        );
        assert_eq!(
            judge(202, None, serde_json::Value::Null).unwrap(),
            ProvisionOutcome::done(),
            "a 202 naming no status URL is v1's done"
        );
        assert_eq!(
            judge(202, Some("/jobs/7"), serde_json::Value::Null).unwrap(),
            ProvisionOutcome::Accepted {
                status_url: "https://prov.example.com/jobs/7".into()
            }
        );
        assert!(matches!(
            judge(202, Some("https://elsewhere.example.com/jobs/7"), serde_json::Value::Null),
            Ok(ProvisionOutcome::Failed(reason)) if reason.contains("another origin") && !reason.contains("token")
        ));
        assert!(matches!(
            judge(200, None, serde_json::json!({"status": "failed", "reason": "locked"})),
            Ok(ProvisionOutcome::Failed(reason)) if reason.ends_with("locked")
        ));
        assert!(
            judge(200, None, serde_json::json!({"access_removed": false})).is_err(),
            "a revoke that says access stays is a failed attempt"
        );
        assert_eq!(
            judge(
                200,
                None,
                serde_json::json!({"access_removed": true, "sessions": "sometimes", "residual_until": "soon"})
            )
            .unwrap(),
            ProvisionOutcome::Done(ProvisionReceipt {
                access_removed: Some(true),
                sessions: None,
                residual_until: None,
                cut_until: None,
            }),
            "unknown values are not guessed at"
        );
    }

    #[test]
    fn urls_in_errors_lose_their_query() {
        assert_eq!(
            display_url("https://h.example.com/p?token=abc"),
            "https://h.example.com/p"
        );
    }
}
