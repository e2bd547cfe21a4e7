//! Linear deliveries. Linear signs every webhook delivery: `Linear-Signature` is the lower-case hex HMAC-SHA256
//! of the raw body under the webhook's signing secret (the connection's webhook secret), and the body's
//! `webhookTimestamp` (milliseconds) must be within 60 s of now, as Linear's own SDK checks, so a captured
//! delivery cannot be replayed later. An authentic body can be trusted to say what happened: an `Issue` event
//! whose state type is closed, or which archives, trashes or removes the issue, closes it.

use serde::Deserialize;
use serde_json::Value;

use super::{CLOSED_STATE_TYPES, canonical_identifier, parse_identifier};
use crate::adapters::lenient_json::{IdText, Object, Text};
use crate::domain::connection::{ConnectionSettings, WebhookSecrets};
use crate::domain::ticket_events::{Closing, Delivery, TicketChange};
use crate::domain::webhook_auth::{hub_signature, hub_signature_matches};
use crate::ports::{DeliveryHeaders, DeliveryRefusal, DeliveryRules};

/// The header Linear signs in.
pub const SIGNATURE_HEADER: &str = "linear-signature";
/// Linear's delivery id, for dedupe.
pub const DELIVERY_HEADER: &str = "linear-delivery";
/// How far a delivery's timestamp may be from now.
pub const MAX_SKEW: time::Duration = time::Duration::seconds(60);

/// The `Linear-Signature` value for `body` under `secret`, as Linear computes it.
pub fn linear_signature(secret: &str, body: &[u8]) -> String {
    hub_signature(secret, body)
        .trim_start_matches("sha256=")
        .to_owned()
}

/// What the proof needs of the body: when Linear says it sent it.
#[derive(Deserialize)]
struct Stamped {
    #[serde(default, rename = "webhookTimestamp")]
    webhook_timestamp: IdText,
}

/// An `Issue` event's body; every field lenient.
#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    action: Text,
    #[serde(default, rename = "type")]
    kind: Text,
    #[serde(default)]
    data: Object<IssueData>,
    #[serde(default, rename = "webhookTimestamp")]
    webhook_timestamp: IdText,
}

#[derive(Deserialize)]
struct IssueData {
    #[serde(default)]
    id: Text,
    #[serde(default)]
    identifier: Text,
    #[serde(default)]
    trashed: Option<Value>,
    #[serde(default, rename = "archivedAt")]
    archived_at: Text,
    #[serde(default)]
    state: Object<StateData>,
}

#[derive(Deserialize)]
struct StateData {
    #[serde(default)]
    name: Text,
    #[serde(default, rename = "type")]
    kind: Text,
}

/// A timestamp in milliseconds since the epoch.
fn instant_of(millis: Option<&str>) -> Option<time::OffsetDateTime> {
    let millis: i128 = millis?.parse().ok()?;
    time::OffsetDateTime::from_unix_timestamp_nanos(millis.checked_mul(1_000_000)?).ok()
}

/// Linear's deliveries for the one webhook extractor: the signature on the raw body and a fresh timestamp, then
/// the issue event it tells.
pub struct LinearDeliveries;

impl DeliveryRules for LinearDeliveries {
    fn proof_needs_body(&self, _headers: &dyn DeliveryHeaders) -> bool {
        true
    }

    fn authenticate(
        &self,
        _settings: &ConnectionSettings,
        headers: &dyn DeliveryHeaders,
        body: &[u8],
        secrets: &WebhookSecrets,
    ) -> Result<(), DeliveryRefusal> {
        let signature = headers.present(SIGNATURE_HEADER).ok_or(DeliveryRefusal {
            reason: "missing",
            message: "the delivery carries no `Linear-Signature`; register the webhook in Linear with the connection's webhook secret",
        })?;
        if !hub_signature_matches(&secrets.0, &format!("sha256={}", signature.trim()), body) {
            return Err(DeliveryRefusal {
                reason: "wrong_signature",
                message: "`Linear-Signature` is not the HMAC-SHA256 of the body under an active webhook secret of this connection",
            });
        }
        // Signed, so the timestamp is Linear's: the body's, or the newer header when the body has none.
        let stamped = serde_json::from_slice::<Stamped>(body)
            .ok()
            .and_then(|s| s.webhook_timestamp.0)
            .or_else(|| headers.present("linear-timestamp").map(str::to_owned));
        match instant_of(stamped.as_deref()) {
            Some(at) if (time::OffsetDateTime::now_utc() - at).abs() <= MAX_SKEW => Ok(()),
            _ => Err(DeliveryRefusal {
                reason: "stale",
                message: "the delivery's `webhookTimestamp` is missing or more than 60 s from now: a replay, or a clock far off",
            }),
        }
    }

    fn interpret(
        &self,
        settings: &ConnectionSettings,
        headers: &dyn DeliveryHeaders,
        body: &Value,
    ) -> Result<Delivery, String> {
        let parsed = Body::deserialize(body)
            .map_err(|_| "the body is not a JSON object; send Linear's webhook".to_owned())?;
        if parsed.kind.get() != Some("Issue") {
            return Err(format!(
                "a `{}` event is not an issue event; subscribe the webhook to Issues only",
                parsed.kind.get().unwrap_or("?")
            ));
        }
        let data = parsed
            .data
            .0
            .ok_or_else(|| "the issue event has no `data`".to_owned())?;
        let key = data
            .identifier
            .get()
            .filter(|k| parse_identifier(k).is_some())
            .map(canonical_identifier)
            .ok_or_else(|| "the issue event names no issue `identifier` (ENG-123)".to_owned())?;
        let action = parsed.action.get().unwrap_or("update").to_owned();
        let trashed = data.trashed.as_ref().and_then(Value::as_bool) == Some(true);
        let (state_name, state_type) = data
            .state
            .get()
            .map(|s| {
                (
                    s.name.get().unwrap_or("").to_owned(),
                    s.kind.get().unwrap_or("").to_owned(),
                )
            })
            .unwrap_or_default();
        let closing = if action == "remove" || trashed {
            Some(Closing::Deleted)
        } else if data.archived_at.get().is_some()
            || CLOSED_STATE_TYPES.contains(&state_type.as_str())
            || (!state_name.is_empty() && settings.closed_statuses.has_name(&state_name))
        {
            Some(Closing::Closed)
        } else {
            None
        };
        let delivery_id = headers
            .present(DELIVERY_HEADER)
            .filter(|d| !d.is_empty() && d.len() <= 200)
            .map(|d| format!("linear:{}:{d}", settings.id));
        Ok(Delivery::Told {
            connection: settings.id.clone(),
            delivery_id,
            change: TicketChange {
                key,
                id: data.id.0,
                closing,
                source: format!("linear:{action}"),
                reported_at: instant_of(parsed.webhook_timestamp.get()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secret::Secret;
    use serde_json::json;

    struct Headers(Vec<(&'static str, String)>);

    impl DeliveryHeaders for Headers {
        fn present(&self, name: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn settings() -> ConnectionSettings {
        serde_json::from_value(json!({
            "id": "linear-main", "kind": "linear", "base_url": "https://api.linear.app",
            "auth_method": "api_key", "closed_statuses": ["In Review"], "webhook_secrets_active": 1,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    /// An issue update as Linear sends it (trimmed), moved into a state of `state_type`.
    fn issue_update(state_name: &str, state_type: &str, at_ms: i128) -> Value {
        json!({
            "action": "update", "type": "Issue", "createdAt": "2026-05-01T12:00:00.000Z",
            "organizationId": "org-1", "webhookId": "wh-1", "webhookTimestamp": at_ms,
            "url": "https://linear.app/acme/issue/ENG-42/rotate-keys",
            "data": {
                "id": "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9", "identifier": "ENG-42", "number": 42,
                "title": "Rotate keys", "trashed": null, "archivedAt": null,
                "state": {"id": "s-1", "name": state_name, "type": state_type, "color": "#5e6ad2"},
                "team": {"id": "t-1", "key": "ENG", "name": "Engineering"}
            },
            "updatedFrom": {"stateId": "s-0", "updatedAt": "2026-05-01T11:59:00.000Z"}
        })
    }

    fn now_ms() -> i128 {
        time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
    }

    #[test]
    fn only_a_fresh_delivery_signed_with_an_active_secret_is_authentic() {
        let secrets = WebhookSecrets(vec![Secret::new("old-secret"), Secret::new("new-secret")]);
        let body = issue_update("Done", "completed", now_ms())
            .to_string()
            .into_bytes();
        let signed = |secret: &str, body: &[u8]| {
            Headers(vec![(SIGNATURE_HEADER, linear_signature(secret, body))])
        };
        let check = |headers: &Headers, body: &[u8]| {
            LinearDeliveries.authenticate(&settings(), headers, body, &secrets)
        };
        assert_eq!(check(&signed("new-secret", &body), &body), Ok(()));
        assert_eq!(check(&signed("old-secret", &body), &body), Ok(()));
        assert_eq!(
            check(&signed("other", &body), &body).unwrap_err().reason,
            "wrong_signature"
        );
        assert_eq!(
            check(&Headers(vec![]), &body).unwrap_err().reason,
            "missing"
        );
        // Signed, but sent again two minutes later: refused.
        let old = issue_update("Done", "completed", now_ms() - 120_000)
            .to_string()
            .into_bytes();
        assert_eq!(
            check(&signed("new-secret", &old), &old).unwrap_err().reason,
            "stale"
        );
        let unstamped = br#"{"type":"Issue"}"#;
        assert_eq!(
            check(&signed("new-secret", unstamped), unstamped)
                .unwrap_err()
                .reason,
            "stale"
        );
    }

    #[test]
    fn closed_state_types_archive_trash_and_removal_close_the_issue() {
        let at = now_ms();
        let closing = |body: Value| {
            let Delivery::Told { change, .. } = LinearDeliveries
                .interpret(&settings(), &Headers(vec![]), &body)
                .unwrap()
            else {
                panic!("a Linear delivery tells what happened");
            };
            change.closing
        };
        for kind in CLOSED_STATE_TYPES {
            assert_eq!(
                closing(issue_update("X", kind, at)),
                Some(Closing::Closed),
                "{kind}"
            );
        }
        assert_eq!(closing(issue_update("In Progress", "started", at)), None);
        assert_eq!(
            closing(issue_update("In Review", "started", at)),
            Some(Closing::Closed),
            "a state the operator listed"
        );
        let mut archived = issue_update("Todo", "unstarted", at);
        archived["data"]["archivedAt"] = json!("2026-05-01T12:00:00.000Z");
        assert_eq!(closing(archived), Some(Closing::Closed));
        let mut trashed = issue_update("Todo", "unstarted", at);
        trashed["data"]["trashed"] = json!(true);
        assert_eq!(closing(trashed), Some(Closing::Deleted));
        let mut removed = issue_update("Todo", "unstarted", at);
        removed["action"] = json!("remove");
        assert_eq!(closing(removed), Some(Closing::Deleted));
    }

    #[test]
    fn the_change_names_the_issue_its_id_its_time_and_the_delivery() {
        let at = now_ms();
        let headers = Headers(vec![(DELIVERY_HEADER, "d-1".into())]);
        let Delivery::Told {
            delivery_id,
            change,
            ..
        } = LinearDeliveries
            .interpret(
                &settings(),
                &headers,
                &issue_update("Done", "completed", at),
            )
            .unwrap()
        else {
            panic!("told");
        };
        assert_eq!(delivery_id.as_deref(), Some("linear:linear-main:d-1"));
        assert_eq!(change.key, "ENG-42");
        assert_eq!(
            change.id.as_deref(),
            Some("2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9")
        );
        assert_eq!(
            change
                .reported_at
                .map(|t| t.unix_timestamp_nanos() / 1_000_000),
            Some(at)
        );
    }

    #[test]
    fn other_events_and_odd_bodies_are_refused_never_a_panic() {
        for body in [
            json!({"type": "Comment", "action": "create", "data": {"id": "c-1"}}),
            json!({"type": "Issue", "data": {"identifier": "not an id"}}),
            json!({"type": "Issue", "data": "ENG-1"}),
            json!({"type": "Issue"}),
            json!([1, 2]),
            json!({"type": 5, "data": {"identifier": 7, "state": []}}),
        ] {
            assert!(
                LinearDeliveries
                    .interpret(&settings(), &Headers(vec![]), &body)
                    .is_err(),
                "{body}"
            );
        }
    }
}
