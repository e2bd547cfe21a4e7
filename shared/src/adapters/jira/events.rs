//! What a Jira delivery says about a ticket (DESIGN §1 rule 9, §9).
//!
//! Jira: `jira:issue_updated` closes when the issue's status category key is `done` (id 3), when its status
//! name is one of the connection's `closed_statuses`, or when the changelog moves the status to one of them;
//! `jira:issue_deleted` deletes. Category *names* are localised ("Fertig"), so only the key and id count.
//! Cloud and Data Center shapes both parse (Data Center changelog items have no `fieldId`). Jira Automation
//! "Send web request" bodies are recognised in their three forms: *Issue data (Jira format)* `{"issue": {...}}`,
//! *Issue data (Automation format)* (the raw issue, numeric `id`), and *Custom data* such as
//! `{"key": "{{issue.key}}", "statusCategory": "{{issue.status.statusCategory.key}}", "status": "...",
//! "event": "deleted"}`.

use serde_json::Value;

use super::category_is_done;
pub use crate::domain::ticket_events::{Closing, DeliveryError, TicketChange};

/// A Jira delivery, interpreted.
pub type JiraChange = TicketChange;

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A Jira issue id (`"10042"`, or a JSON number): digits only, at most 20; anything else is not an id.
fn issue_id(v: Option<&Value>) -> Option<String> {
    let id = match v? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.as_u64()?.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}

fn in_list(name: &str, list: &[String]) -> bool {
    list.iter()
        .any(|s| s.trim().eq_ignore_ascii_case(name.trim()))
}

/// Whether an issue object (REST v2 shape) is closed by its current status.
fn issue_is_closed(issue: &Value, closed_statuses: &[String]) -> bool {
    let status = &issue["fields"]["status"];
    let category = &status["statusCategory"];
    category_is_done(text(category.get("key")), category.get("id"))
        || text(status.get("name")).is_some_and(|name| in_list(name, closed_statuses))
}

/// Whether the changelog moves the status to one of `closed_statuses`.
fn changelog_closes(changelog: &Value, closed_statuses: &[String]) -> bool {
    changelog["items"].as_array().is_some_and(|items| {
        items.iter().any(|item| {
            let is_status = match text(item.get("fieldId")) {
                Some(id) => id == "status",
                None => text(item.get("field")).is_some_and(|f| f.eq_ignore_ascii_case("status")),
            };
            is_status && text(item.get("toString")).is_some_and(|to| in_list(to, closed_statuses))
        })
    })
}

/// Interprets a Jira webhook or Jira Automation body.
pub fn interpret_jira(
    body: &Value,
    closed_statuses: &[String],
) -> Result<JiraChange, DeliveryError> {
    let object = body.as_object().ok_or(DeliveryError::NotAnObject)?;
    if let Some(event) = text(object.get("webhookEvent")) {
        let key = text(body["issue"].get("key"));
        if !matches!(event, "jira:issue_updated" | "jira:issue_deleted") {
            // Other events (created, comments, projects, ...) close nothing and may name no issue at all.
            return Ok(JiraChange {
                key: key.unwrap_or_default().to_owned(),
                id: issue_id(body["issue"].get("id")),
                closing: None,
                source: event.to_owned(),
            });
        }
        let key = key.ok_or(DeliveryError::NoTicket("issue.key is missing"))?;
        let closing = match event {
            "jira:issue_deleted" => Some(Closing::Deleted),
            "jira:issue_updated" => (issue_is_closed(&body["issue"], closed_statuses)
                || changelog_closes(&body["changelog"], closed_statuses))
            .then_some(Closing::Closed),
            _ => None,
        };
        return Ok(JiraChange {
            key: key.to_owned(),
            id: issue_id(body["issue"].get("id")),
            closing,
            source: event.to_owned(),
        });
    }
    // Jira Automation: the issue in Jira format, the raw issue, or custom data.
    let issue = if body.get("issue").is_some_and(Value::is_object) {
        Some(&body["issue"])
    } else if body.get("fields").is_some_and(Value::is_object) {
        Some(body)
    } else {
        None
    };
    if let Some(issue) = issue {
        let key = text(issue.get("key")).ok_or(DeliveryError::NoTicket("issue key is missing"))?;
        let closing = issue_is_closed(issue, closed_statuses).then_some(Closing::Closed);
        return Ok(JiraChange {
            key: key.to_owned(),
            id: issue_id(issue.get("id")),
            closing,
            source: "automation".into(),
        });
    }
    let key = text(object.get("key"))
        .or_else(|| text(object.get("issueKey")))
        .ok_or(DeliveryError::NoTicket("no `key`"))?;
    let deleted = text(object.get("event")).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "deleted" | "issue_deleted" | "jira:issue_deleted"
        )
    });
    let category_done = category_is_done(text(object.get("statusCategory")), None);
    let status_closed = text(object.get("status")).is_some_and(|s| in_list(s, closed_statuses));
    let closing = if deleted {
        Some(Closing::Deleted)
    } else if category_done || status_closed {
        Some(Closing::Closed)
    } else {
        None
    };
    Ok(JiraChange {
        key: key.to_owned(),
        id: issue_id(object.get("id").or_else(|| object.get("issueId"))),
        closing,
        source: "automation".into(),
    })
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
                source: "jira:issue_updated".into()
            }
        );
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
