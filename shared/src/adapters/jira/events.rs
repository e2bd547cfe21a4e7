//! What a Jira delivery says about a ticket (DESIGN §1 rule 9, §9), and whether it is authentic.
//!
//! Jira: `jira:issue_updated` closes when the issue's status category key is `done` (id 3), when its status
//! name is one of the connection's `closed_statuses`, or when the changelog moves the status to one of them;
//! `jira:issue_deleted` deletes. Category *names* are localised ("Fertig"), so only the key and id count.
//! Cloud and Data Center shapes both parse (Data Center changelog items have no `fieldId`). Jira Automation
//! "Send web request" bodies are recognised in their three forms: *Issue data (Jira format)* `{"issue": {...}}`,
//! *Issue data (Automation format)* (the raw issue, numeric `id`), and *Custom data* such as
//! `{"key": "{{issue.key}}", "statusCategory": "{{issue.status.statusCategory.key}}", "status": "...",
//! "event": "deleted"}`.
//!
//! The body is read into typed structs (`JiraBody` and the parts it holds) whose fields are lenient (see
//! `adapters::lenient_json`): a field of an unexpected type reads as absent, so an odd delivery is interpreted
//! as far as it can be, or refused with [`DeliveryError`], never a panic.
//!
//! Authenticity ([`authenticate_jira_delivery`]) is checked on the raw bytes before any of this: see its
//! documentation for which proof each kind of Jira connection accepts.

use serde::Deserialize;
use serde_json::Value;

use super::category_is_done;
use crate::adapters::lenient_json::{IdText, List, Object, Text, present};
use crate::domain::connection::{
    ClosedStatuses, ConnectionKind, ConnectionSettings, WebhookSecrets,
};
use crate::domain::ticket_events::Delivery;
pub use crate::domain::ticket_events::{Closing, DeliveryError, TicketChange};
use crate::domain::webhook_auth::basic_auth_password;
use crate::ports::{DeliveryHeaders, DeliveryRefusal, DeliveryRules};

/// A Jira delivery, interpreted.
pub type JiraChange = TicketChange;

/// The members of a Jira delivery that Ticketbound reads, in every form it arrives in: an admin webhook
/// (`webhookEvent`, `issue`, `changelog`), Automation's *Issue data* (`issue`, or the raw issue with `key`,
/// `id` and `fields` at the top), and Automation's *Custom data* (`key`/`issueKey`, `id`/`issueId`, `event`,
/// `statusCategory`, `status`). Everything else in a body is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JiraBody {
    #[serde(rename = "webhookEvent")]
    webhook_event: Text,
    /// When the event happened: epoch milliseconds, a JSON number (admin webhooks; Automation bodies have none).
    timestamp: Option<Value>,
    issue: Object<JiraIssue>,
    changelog: Object<Changelog>,
    key: Text,
    #[serde(rename = "issueKey")]
    issue_key: Text,
    /// `Some` whenever the body has an `id` member, usable or not: a custom body's `issueId` counts only when
    /// there is no `id` at all.
    #[serde(deserialize_with = "present")]
    id: Option<IdText>,
    #[serde(rename = "issueId")]
    issue_id: IdText,
    fields: Object<IssueFields>,
    event: Text,
    #[serde(rename = "statusCategory")]
    status_category: Text,
    status: Text,
}

/// An issue in the REST v2 representation webhooks use (Cloud and Data Center).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JiraIssue {
    key: Text,
    /// A string in webhooks (`"10005"`), a number in Automation's own format.
    id: IdText,
    fields: Object<IssueFields>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IssueFields {
    status: Object<IssueStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IssueStatus {
    name: Text,
    #[serde(rename = "statusCategory")]
    status_category: Object<StatusCategory>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatusCategory {
    key: Text,
    /// A number in Cloud deliveries (`3`), a string in some others (`"3"`): handed as is to the one rule,
    /// [`category_is_done`], as reads do.
    id: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Changelog {
    items: List<Object<ChangelogItem>>,
}

/// One changed field. Cloud names the field by `fieldId` (`"status"`) beside a display name that may be
/// capitalised (`"Status"` on `jira:issue_created`); Data Center sends only `field`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChangelogItem {
    #[serde(rename = "fieldId")]
    field_id: Text,
    field: Text,
    /// The new value's display name: for a status, its name.
    #[serde(rename = "toString")]
    to_name: Text,
}

/// A Jira issue id (`"10042"`, or a JSON number): digits only, at most 20; anything else is not an id.
fn issue_id(id: &IdText) -> Option<String> {
    id.get()
        .filter(|id| !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

/// A webhook's `timestamp` (epoch milliseconds, a JSON number; a string of digits is read too) as a time.
/// Anything else is no time at all, and the closing is then confirmed with Jira: so is a number below
/// [`MIN_EVENT_MILLIS`], which cannot be milliseconds of a real event (seconds, say) and, read as a time, would
/// leave every grant alone as bound after it.
fn event_time(timestamp: &Value) -> Option<time::OffsetDateTime> {
    let millis = match timestamp {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    if millis < MIN_EVENT_MILLIS {
        return None;
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

/// 10^12 epoch milliseconds: September 2001, before any Jira webhook (and any epoch-seconds value until 33658).
const MIN_EVENT_MILLIS: i64 = 1_000_000_000_000;

fn in_list(name: &str, list: &[String]) -> bool {
    list.iter()
        .any(|s| s.trim().eq_ignore_ascii_case(name.trim()))
}

/// Whether an issue's current status closes it: the done category, or a status named in `closed_statuses`.
fn status_is_closed(fields: &Object<IssueFields>, closed_statuses: &[String]) -> bool {
    let Some(status) = fields.get().and_then(|f| f.status.get()) else {
        return false;
    };
    let category = status.status_category.get();
    category_is_done(
        category.and_then(|c| c.key.get()),
        category.and_then(|c| c.id.as_ref()),
    ) || status
        .name
        .get()
        .is_some_and(|name| in_list(name, closed_statuses))
}

impl Changelog {
    /// Whether the changelog moves the status to one of `closed_statuses`.
    fn closes(&self, closed_statuses: &[String]) -> bool {
        self.items.iter().filter_map(Object::get).any(|item| {
            let is_status = match item.field_id.get() {
                Some(id) => id == "status",
                None => item
                    .field
                    .get()
                    .is_some_and(|f| f.eq_ignore_ascii_case("status")),
            };
            is_status
                && item
                    .to_name
                    .get()
                    .is_some_and(|to| in_list(to, closed_statuses))
        })
    }
}

/// Interprets a Jira webhook or Jira Automation body.
pub fn interpret_jira(
    body: &Value,
    closed_statuses: &[String],
) -> Result<JiraChange, DeliveryError> {
    let Object(Some(body)) = Object::<JiraBody>::deserialize(body).unwrap_or_default() else {
        return Err(DeliveryError::NotAnObject);
    };
    body.interpret(closed_statuses)
}

impl JiraBody {
    fn interpret(self, closed_statuses: &[String]) -> Result<JiraChange, DeliveryError> {
        if let Some(event) = self.webhook_event.get() {
            let issue = self.issue.get();
            let key = issue.and_then(|i| i.key.get());
            let id = issue.and_then(|i| issue_id(&i.id));
            let reported_at = self.timestamp.as_ref().and_then(event_time);
            if !matches!(event, "jira:issue_updated" | "jira:issue_deleted") {
                // Other events (created, comments, projects, ...) close nothing and may name no issue at all.
                return Ok(JiraChange {
                    key: key.unwrap_or_default().to_owned(),
                    id,
                    closing: None,
                    source: event.to_owned(),
                    reported_at,
                });
            }
            let key = key.ok_or(DeliveryError::NoTicket("issue.key is missing"))?;
            let closing = match event {
                "jira:issue_deleted" => Some(Closing::Deleted),
                _ => (issue.is_some_and(|i| status_is_closed(&i.fields, closed_statuses))
                    || self
                        .changelog
                        .get()
                        .is_some_and(|c| c.closes(closed_statuses)))
                .then_some(Closing::Closed),
            };
            return Ok(JiraChange {
                key: key.to_owned(),
                id,
                closing,
                source: event.to_owned(),
                reported_at,
            });
        }
        // Jira Automation: the issue in Jira format, the raw issue, or custom data.
        if let Some(issue) = self.issue.get() {
            return Self::automation_issue(&issue.key, &issue.id, &issue.fields, closed_statuses);
        }
        if self.fields.get().is_some() {
            let id = self.id.clone().unwrap_or_default();
            return Self::automation_issue(&self.key, &id, &self.fields, closed_statuses);
        }
        let key = self
            .key
            .get()
            .or_else(|| self.issue_key.get())
            .ok_or(DeliveryError::NoTicket("no `key`"))?;
        let deleted = self.event.get().is_some_and(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "deleted" | "issue_deleted" | "jira:issue_deleted"
            )
        });
        let category_done = category_is_done(self.status_category.get(), None);
        let status_closed = self
            .status
            .get()
            .is_some_and(|s| in_list(s, closed_statuses));
        let closing = if deleted {
            Some(Closing::Deleted)
        } else if category_done || status_closed {
            Some(Closing::Closed)
        } else {
            None
        };
        Ok(JiraChange {
            key: key.to_owned(),
            id: issue_id(self.id.as_ref().unwrap_or(&self.issue_id)),
            closing,
            source: "automation".into(),
            reported_at: None,
        })
    }

    /// An Automation *Issue data* body: closed by its current status alone (it carries no changelog).
    fn automation_issue(
        key: &Text,
        id: &IdText,
        fields: &Object<IssueFields>,
        closed_statuses: &[String],
    ) -> Result<JiraChange, DeliveryError> {
        let key = key
            .get()
            .ok_or(DeliveryError::NoTicket("issue key is missing"))?;
        Ok(JiraChange {
            key: key.to_owned(),
            id: issue_id(id),
            closing: status_is_closed(fields, closed_statuses).then_some(Closing::Closed),
            source: "automation".into(),
            reported_at: None,
        })
    }
}

/// What a Jira delivery presents as proof that it comes from the connection's Jira: the values of its
/// `X-Hub-Signature`, `X-Ticketbound-Secret` and `Authorization` headers. Deliberately not `Debug`: two of them
/// carry the secret itself.
#[derive(Clone, Copy, Default)]
pub struct JiraDeliveryProof<'a> {
    /// `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`, from an admin webhook with a secret.
    pub hub_signature: Option<&'a str>,
    /// `X-Ticketbound-Secret: <secret>`, from a Jira Automation rule (which cannot sign).
    pub shared_secret: Option<&'a str>,
    /// `Authorization: Basic base64(<any user>:<secret>)`, from a Data Center webhook that cannot sign.
    pub authorization: Option<&'a str>,
}

/// How an authentic Jira delivery proved itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JiraProof {
    Signature,
    SharedSecret,
    BasicPassword,
}

/// Why a Jira delivery is not authentic. Each answers 401 `invalid_signature` and changes nothing; the reason
/// is logged (never what was presented) and told to the sender, so an admin testing the webhook knows what to
/// fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JiraRefusal {
    /// An `X-Hub-Signature` that no active secret gives for these bytes. Refused whatever else the delivery
    /// carries: a valid shared secret or Basic password beside a wrong signature is not a way around it.
    WrongSignature,
    /// An `X-Ticketbound-Secret` that is no active secret (whatever `Authorization` says).
    WrongSharedSecret,
    /// A Basic password that is no active secret.
    WrongBasicPassword,
    /// Basic auth on a Jira Cloud connection: Cloud admin webhooks sign and Automation sends the header, so
    /// Basic is not accepted there.
    BasicFromCloud,
    /// An `Authorization` that is not Basic (a Connect or OAuth app's JWT, a bearer token): not a proof here.
    UnsupportedAuthorization,
    /// No signature, shared secret or `Authorization` at all.
    Missing,
}

impl JiraRefusal {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongSignature => "wrong_signature",
            Self::WrongSharedSecret => "wrong_shared_secret",
            Self::WrongBasicPassword => "wrong_basic_password",
            Self::BasicFromCloud => "basic_auth_on_cloud",
            Self::UnsupportedAuthorization => "unsupported_authorization",
            Self::Missing => "missing",
        }
    }

    /// The §5 error message: what is wrong and how to fix it.
    pub fn message(self) -> &'static str {
        match self {
            Self::WrongSignature => {
                "the X-Hub-Signature is not the HMAC-SHA256 of this body under an active webhook secret of this connection (a signed delivery is judged by its signature alone)"
            }
            Self::WrongSharedSecret => {
                "the X-Ticketbound-Secret is not an active webhook secret of this connection"
            }
            Self::WrongBasicPassword => {
                "the Basic auth password is not an active webhook secret of this connection"
            }
            Self::BasicFromCloud => {
                "Basic auth is accepted only from Jira Data Center; give the Jira Cloud webhook the connection's webhook secret so that it signs (X-Hub-Signature), or send X-Ticketbound-Secret from Automation"
            }
            Self::UnsupportedAuthorization => {
                "the Authorization header is not Basic auth; sign the delivery with the connection's webhook secret (X-Hub-Signature) or send X-Ticketbound-Secret"
            }
            Self::Missing => {
                "the delivery is not signed with, and does not carry, an active webhook secret of this connection"
            }
        }
    }
}

/// Whether a Jira delivery comes from the connection's Jira, judged on the raw bytes in constant time against
/// every active webhook secret (rotation), before anything is parsed.
///
/// The strongest proof presented decides alone, so nothing downgrades a signed delivery:
/// 1. `X-Hub-Signature` present: authentic exactly when it verifies (Cloud and Data Center admin webhooks with a
///    secret).
/// 2. else `X-Ticketbound-Secret` present: authentic exactly when it is an active secret (Automation rules).
/// 3. else `Authorization: Basic`: on a **Data Center** connection, authentic when the password is an active
///    secret; the user name is not checked (Data Center versions whose webhooks cannot carry a secret). On a
///    **Cloud** connection it is refused: Cloud can always sign.
pub fn authenticate_jira_delivery(
    kind: ConnectionKind,
    proof: &JiraDeliveryProof<'_>,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<JiraProof, JiraRefusal> {
    if let Some(signature) = proof.hub_signature {
        return if secrets.accepts_hub_signature(signature, body) {
            Ok(JiraProof::Signature)
        } else {
            Err(JiraRefusal::WrongSignature)
        };
    }
    if let Some(secret) = proof.shared_secret {
        return if secrets.accepts_shared_secret(secret) {
            Ok(JiraProof::SharedSecret)
        } else {
            Err(JiraRefusal::WrongSharedSecret)
        };
    }
    let Some(authorization) = proof.authorization else {
        return Err(JiraRefusal::Missing);
    };
    let Some(password) = basic_auth_password(authorization) else {
        return Err(JiraRefusal::UnsupportedAuthorization);
    };
    if kind != ConnectionKind::JiraDataCenter {
        return Err(JiraRefusal::BasicFromCloud);
    }
    if secrets.accepts_shared_secret(&password) {
        Ok(JiraProof::BasicPassword)
    } else {
        Err(JiraRefusal::WrongBasicPassword)
    }
}

/// Jira's deliveries for the one webhook extractor: an `X-Hub-Signature` is judged on the raw body, every other
/// proof on the headers alone ([`authenticate_jira_delivery`]); the body says what happened
/// ([`interpret_jira`]), deduplicated by `X-Atlassian-Webhook-Identifier`.
pub struct JiraDeliveries;

impl DeliveryRules for JiraDeliveries {
    fn proof_needs_body(&self, headers: &dyn DeliveryHeaders) -> bool {
        // A signed delivery is judged by its signature alone.
        headers.present("x-hub-signature").is_some()
    }

    fn authenticate(
        &self,
        settings: &ConnectionSettings,
        headers: &dyn DeliveryHeaders,
        body: &[u8],
        secrets: &WebhookSecrets,
    ) -> Result<(), DeliveryRefusal> {
        let proof = JiraDeliveryProof {
            hub_signature: headers.present("x-hub-signature"),
            shared_secret: headers.present("x-ticketbound-secret"),
            authorization: headers.present("authorization"),
        };
        authenticate_jira_delivery(settings.kind, &proof, body, secrets)
            .map(|_| ())
            .map_err(|refusal| DeliveryRefusal {
                reason: refusal.as_str(),
                message: refusal.message(),
            })
    }

    fn interpret(
        &self,
        settings: &ConnectionSettings,
        headers: &dyn DeliveryHeaders,
        body: &Value,
    ) -> Result<Delivery, String> {
        let delivery_id = headers
            .present("x-atlassian-webhook-identifier")
            .filter(|d| !d.is_empty() && d.len() <= 200)
            .map(|d| format!("jira:{}:{d}", settings.id));
        let closed_names = match &settings.closed_statuses {
            ClosedStatuses::Names(names) => names.clone(),
            ClosedStatuses::Numbers(_) => Vec::new(),
        };
        let change = interpret_jira(body, &closed_names).map_err(|e| {
            format!("{e}; send a Jira webhook or an Automation body naming the issue key")
        })?;
        Ok(Delivery::Told {
            connection: settings.id.clone(),
            delivery_id,
            change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn closed(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The real Cloud capture moved to Done: a resolution and a status item, category `done`.
    fn cloud_done() -> Value {
        let mut body = fixture("jira-cloud-issue-updated-status-inprogress.json");
        body["issue"]["fields"]["status"] = json!({"name": "Done", "id": "10001", "statusCategory": {"id": 3, "key": "done", "colorName": "green", "name": "Done"}});
        body["changelog"]["items"] = json!([
            {"field": "resolution", "fieldtype": "jira", "fieldId": "resolution", "from": null, "fromString": null, "to": "10000", "toString": "Done"},
            {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "3", "fromString": "In Progress", "to": "10001", "toString": "Done"}
        ]);
        body
    }

    #[test]
    fn a_cloud_transition_to_in_progress_closes_nothing() {
        let change = interpret_jira(
            &fixture("jira-cloud-issue-updated-status-inprogress.json"),
            &[],
        )
        .unwrap();
        assert_eq!(
            change,
            JiraChange {
                key: "API-1".into(),
                id: Some("10005".into()),
                closing: None,
                source: "jira:issue_updated".into(),
                reported_at: time::OffsetDateTime::from_unix_timestamp_nanos(
                    1_728_376_683_790_000_000
                )
                .ok(),
            }
        );
    }

    #[test]
    fn a_timestamp_is_read_as_epoch_milliseconds_and_one_that_cannot_be_is_no_time() {
        let at = |timestamp: Value| {
            let mut body = cloud_done();
            body["timestamp"] = timestamp;
            interpret_jira(&body, &[]).unwrap().reported_at
        };
        let expected =
            time::OffsetDateTime::from_unix_timestamp_nanos(1_728_376_683_790_000_000).ok();
        assert_eq!(at(json!(1_728_376_683_790u64)), expected);
        assert_eq!(at(json!("1728376683790")), expected);
        for not_millis in [
            json!(1_728_376_683),
            json!(-1),
            json!(0),
            json!("soon"),
            json!(1.5e20),
            Value::Null,
        ] {
            assert_eq!(at(not_millis.clone()), None, "{not_millis}");
        }
    }

    #[test]
    fn a_cloud_transition_to_done_closes() {
        assert_eq!(
            interpret_jira(&cloud_done(), &[]).unwrap().closing,
            Some(Closing::Closed)
        );
    }

    #[test]
    fn a_localised_done_category_closes_by_key() {
        let mut body = cloud_done();
        body["issue"]["fields"]["status"]["statusCategory"]["name"] = "Fertig".into();
        body["issue"]["fields"]["status"]["name"] = "Erledigt".into();
        assert_eq!(
            interpret_jira(&body, &[]).unwrap().closing,
            Some(Closing::Closed)
        );
    }

    #[test]
    fn a_status_in_closed_statuses_closes_even_outside_the_done_category() {
        let mut body = fixture("jira-cloud-issue-updated-status-inprogress.json");
        body["issue"]["fields"]["status"]["name"] = "Won't Fix".into();
        assert_eq!(
            interpret_jira(&body, &closed(&["won't fix"]))
                .unwrap()
                .closing,
            Some(Closing::Closed)
        );
        let mut by_changelog = fixture("jira-cloud-issue-updated-status-inprogress.json");
        by_changelog["changelog"]["items"][0]["toString"] = "Rejected".into();
        assert_eq!(
            interpret_jira(&by_changelog, &closed(&["Rejected"]))
                .unwrap()
                .closing,
            Some(Closing::Closed)
        );
        assert_eq!(interpret_jira(&by_changelog, &[]).unwrap().closing, None);
    }

    #[test]
    fn a_data_center_close_parses_without_field_ids_or_account_ids() {
        let body = json!({
            "timestamp": 1591789130000u64, "webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_closed",
            "user": {"self": "https://jira.example.com/rest/api/2/user?username=valentijn", "name": "valentijn", "key": "valentijn", "emailAddress": "v@example.com"},
            "issue": {"id": "12345", "self": "https://jira.example.com/rest/api/2/issue/12345", "key": "NTEST-1",
                      "fields": {"summary": "x", "status": {"name": "Closed", "id": "6", "statusCategory": {"id": 3, "key": "done", "colorName": "green", "name": "Done"}},
                                 "assignee": {"name": "valentijn", "key": "valentijn", "emailAddress": "v@example.com"}}},
            "changelog": {"id": "1", "items": [
                {"field": "resolution", "fieldtype": "jira", "from": null, "fromString": null, "to": "10000", "toString": "Cancelled"},
                {"field": "status", "fieldtype": "jira", "from": "10000", "fromString": "New", "to": "6", "toString": "Closed"}]}
        });
        let change = interpret_jira(&body, &[]).unwrap();
        assert_eq!(change.key, "NTEST-1");
        assert_eq!(change.closing, Some(Closing::Closed));
    }

    #[test]
    fn a_deleted_issue_is_deleted() {
        let mut body = fixture("jira-cloud-issue-updated-status-inprogress.json");
        body["webhookEvent"] = "jira:issue_deleted".into();
        body.as_object_mut().unwrap().remove("changelog");
        body.as_object_mut()
            .unwrap()
            .remove("issue_event_type_name");
        assert_eq!(
            interpret_jira(&body, &[]).unwrap().closing,
            Some(Closing::Deleted)
        );
    }

    #[test]
    fn a_created_issue_with_a_status_changelog_closes_nothing() {
        let change = interpret_jira(
            &fixture("jira-cloud-issue-created.json"),
            &closed(&["Done"]),
        )
        .unwrap();
        assert_eq!(change.closing, None);
        assert_eq!(change.source, "jira:issue_created");
    }

    #[test]
    fn automation_bodies_in_every_form_are_understood() {
        let done_issue = json!({"id": 11111, "key": "SEC-42", "fields": {"status": {"name": "Done", "statusCategory": {"key": "done"}}}});
        assert_eq!(
            interpret_jira(&done_issue, &[]).unwrap().closing,
            Some(Closing::Closed)
        );
        assert_eq!(
            interpret_jira(&json!({"issue": done_issue}), &[])
                .unwrap()
                .key,
            "SEC-42"
        );
        let custom =
            json!({"source": "jira-automation", "key": "SEC-42", "statusCategory": "done"});
        assert_eq!(
            interpret_jira(&custom, &[]).unwrap().closing,
            Some(Closing::Closed)
        );
        let open = json!({"source": "jira-automation", "key": "SEC-42", "statusCategory": "indeterminate"});
        assert_eq!(interpret_jira(&open, &[]).unwrap().closing, None);
        let deleted = json!({"key": "SEC-42", "event": "deleted"});
        assert_eq!(
            interpret_jira(&deleted, &[]).unwrap().closing,
            Some(Closing::Deleted)
        );
    }

    mod authenticity {
        use super::super::*;
        use crate::domain::secret::Secret;
        use crate::domain::webhook_auth::hub_signature;
        use base64::Engine;

        const BODY: &[u8] = br#"{"webhookEvent":"jira:issue_updated"}"#;

        fn secrets() -> WebhookSecrets {
            WebhookSecrets(vec![
                Secret::new("retired-0123456789abcdef"),
                Secret::new("active-0123456789abcdef"),
            ])
        }

        fn basic(user: &str, password: &str) -> String {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        }

        fn judge(
            kind: ConnectionKind,
            signature: Option<&str>,
            shared: Option<&str>,
            authorization: Option<&str>,
        ) -> Result<JiraProof, JiraRefusal> {
            let proof = JiraDeliveryProof {
                hub_signature: signature,
                shared_secret: shared,
                authorization,
            };
            authenticate_jira_delivery(kind, &proof, BODY, &secrets())
        }

        #[test]
        fn data_center_accepts_basic_auth_with_any_active_secret_as_password_and_any_user() {
            for (user, password) in [
                ("ticketbound", "active-0123456789abcdef"),
                ("", "retired-0123456789abcdef"),
                ("jira", "active-0123456789abcdef"),
            ] {
                assert_eq!(
                    judge(
                        ConnectionKind::JiraDataCenter,
                        None,
                        None,
                        Some(&basic(user, password))
                    ),
                    Ok(JiraProof::BasicPassword)
                );
            }
            assert_eq!(
                judge(
                    ConnectionKind::JiraDataCenter,
                    None,
                    None,
                    Some(&basic("ticketbound", "active-0123456789abcdeF"))
                ),
                Err(JiraRefusal::WrongBasicPassword)
            );
            // The secret as the user name is not the password.
            assert_eq!(
                judge(
                    ConnectionKind::JiraDataCenter,
                    None,
                    None,
                    Some(&basic("active-0123456789abcdef", "x"))
                ),
                Err(JiraRefusal::WrongBasicPassword)
            );
        }

        #[test]
        fn cloud_refuses_basic_auth_even_with_the_right_password() {
            assert_eq!(
                judge(
                    ConnectionKind::JiraCloud,
                    None,
                    None,
                    Some(&basic("ticketbound", "active-0123456789abcdef"))
                ),
                Err(JiraRefusal::BasicFromCloud)
            );
        }

        #[test]
        fn a_wrong_signature_is_refused_whatever_else_the_delivery_carries() {
            let wrong = hub_signature("not-a-secret", BODY);
            let right_basic = basic("ticketbound", "active-0123456789abcdef");
            for kind in [ConnectionKind::JiraCloud, ConnectionKind::JiraDataCenter] {
                for (shared, authorization) in [
                    (None, Some(right_basic.as_str())),
                    (Some("active-0123456789abcdef"), None),
                    (Some("active-0123456789abcdef"), Some(right_basic.as_str())),
                    (None, None),
                ] {
                    assert_eq!(
                        judge(kind, Some(&wrong), shared, authorization),
                        Err(JiraRefusal::WrongSignature),
                        "{kind:?}"
                    );
                }
                assert_eq!(
                    judge(kind, Some(""), Some("active-0123456789abcdef"), None),
                    Err(JiraRefusal::WrongSignature)
                );
            }
        }

        #[test]
        fn a_wrong_shared_secret_is_not_rescued_by_basic_auth() {
            assert_eq!(
                judge(
                    ConnectionKind::JiraDataCenter,
                    None,
                    Some("guess"),
                    Some(&basic("ticketbound", "active-0123456789abcdef"))
                ),
                Err(JiraRefusal::WrongSharedSecret)
            );
        }

        #[test]
        fn signatures_and_shared_secrets_work_for_both_kinds() {
            let signed = hub_signature("retired-0123456789abcdef", BODY);
            for kind in [ConnectionKind::JiraCloud, ConnectionKind::JiraDataCenter] {
                assert_eq!(
                    judge(kind, Some(&signed), None, Some("Bearer x")),
                    Ok(JiraProof::Signature)
                );
                assert_eq!(
                    judge(kind, None, Some(" active-0123456789abcdef "), None),
                    Ok(JiraProof::SharedSecret)
                );
                assert_eq!(
                    judge(kind, None, None, Some("JWT eyJhbGciOi.x.y")),
                    Err(JiraRefusal::UnsupportedAuthorization)
                );
                assert_eq!(judge(kind, None, None, None), Err(JiraRefusal::Missing));
            }
        }

        #[test]
        fn no_refusal_message_names_a_secret() {
            for refusal in [
                JiraRefusal::WrongSignature,
                JiraRefusal::WrongSharedSecret,
                JiraRefusal::WrongBasicPassword,
                JiraRefusal::BasicFromCloud,
                JiraRefusal::UnsupportedAuthorization,
                JiraRefusal::Missing,
            ] {
                assert!(!refusal.message().contains("0123456789"));
                assert!(!refusal.as_str().is_empty());
            }
        }
    }

    #[test]
    fn bodies_without_a_ticket_are_refused() {
        assert_eq!(
            interpret_jira(&json!([1, 2]), &[]),
            Err(DeliveryError::NotAnObject)
        );
        assert!(interpret_jira(&json!({"webhookEvent": "jira:issue_updated"}), &[]).is_err());
        assert!(interpret_jira(&json!({"hello": "world"}), &[]).is_err());
    }
}
