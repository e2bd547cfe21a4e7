//! What Ticketbound writes into ticket systems (DESIGN §7 `ticket` provisioner, §8 audit tickets): where a new
//! ticket goes, what it says, and the marker that finds it again.
//!
//! Every ticket Ticketbound opens carries a **marker** (a Jira label, a Freshservice tag) derived from the grant
//! and the purpose, e.g. `tb-01jd3…-grant`. Before opening a ticket, Ticketbound searches for its marker, so an
//! attempt whose answer was lost (a timeout after the ticket system created the ticket) is not repeated as a
//! second ticket when the durable retry runs.

use serde::{Deserialize, Serialize};

/// Where a new ticket goes, as the connection's ticket system checked it, its defaults filled in: the
/// destination fields that kind uses (a Jira project key and issue type, a Freshservice group and priority),
/// the others `None`. What each means is the plug-in's; the shared layers only store and hand it on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketDestination {
    /// A project (or team) key, e.g. Jira's `SEC`.
    pub project: Option<String>,
    /// An issue type name, e.g. Jira's `Task`.
    pub issue_type: Option<String>,
    /// A group, e.g. Freshservice's group id.
    pub group_id: Option<u64>,
    /// A priority in the ticket system's own scale (Freshservice 1–4).
    pub priority: Option<u8>,
}

/// A ticket to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTicket {
    pub destination: TicketDestination,
    /// One line; cut to [`MAX_SUMMARY`] characters.
    pub summary: String,
    /// Plain text; each line becomes a paragraph (ADF on Jira Cloud, wiki text on Data Center, HTML on
    /// Freshservice).
    pub description: String,
    /// Freshservice needs a requester: the e-mail of the person the ticket is about.
    pub requester_email: String,
    /// The marker that finds this ticket again ([`marker`]).
    pub marker: String,
}

/// A ticket Ticketbound opened (or found by its marker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedTicket {
    /// `SEC-42`, or a Freshservice id as text.
    pub key: String,
    pub url: String,
}

/// What closing a ticket found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// This call closed it.
    Closed,
    /// It was closed already (by a person, or by an earlier attempt whose answer was lost).
    AlreadyClosed,
    /// The ticket system no longer has it (deleted): nothing left to close.
    NotFound,
}

/// The longest summary written (Jira's limit is 255).
pub const MAX_SUMMARY: usize = 250;

/// The marker of the ticket opened for `purpose` (`grant`, `revoke`, `audit`) of a grant: lower case, no spaces,
/// so it is a valid Jira label and Freshservice tag.
pub fn marker(grant_id: &str, purpose: &str) -> String {
    format!("tb-{}-{purpose}", grant_id.to_ascii_lowercase())
}

/// The line that takes a person reading a ticket to the grant in the portal (`<portal_url>/#/grant/<id>`), so a
/// person in the ticket system reaches it in one click. None without a portal URL: a link relative to nothing
/// would lead nowhere.
pub fn grant_link_line(portal_url: Option<&str>, grant_id: &str) -> Option<String> {
    let base = portal_url.map(str::trim).filter(|u| !u.is_empty())?;
    Some(format!(
        "Open in Ticketbound: {}/#/grant/{grant_id}",
        base.trim_end_matches('/')
    ))
}

/// A summary cut to [`MAX_SUMMARY`] characters on one line.
pub fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() > MAX_SUMMARY {
        line.chars().take(MAX_SUMMARY - 1).collect::<String>() + "…"
    } else {
        line
    }
}

/// The optional audit settings of a connection (DESIGN §8): where the audit ticket of every request goes.
/// Jira uses `project` (required) and `issue_type` (default `Task`); Freshservice `group_id` (optional) and
/// `priority` (1–4, default 2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

/// The destination fields of a `ticket` provisioner or of audit settings, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationFields<'a> {
    pub project: Option<&'a str>,
    pub issue_type: Option<&'a str>,
    pub group_id: Option<u64>,
    pub priority: Option<u8>,
}

impl AuditSettings {
    /// The destination fields these settings give (the connection's ticket system checks them).
    pub fn fields(&self) -> DestinationFields<'_> {
        DestinationFields {
            project: self.project.as_deref(),
            issue_type: self.issue_type.as_deref(),
            group_id: self.group_id,
            priority: self.priority,
        }
    }
}

/// The default Jira issue type and Freshservice priority.
pub const DEFAULT_ISSUE_TYPE: &str = "Task";
pub const DEFAULT_PRIORITY: u8 = 2;

/// A Jira Cloud (REST v3) rich-text value: one paragraph per non-empty line of `text`.
pub fn adf(text: &str) -> serde_json::Value {
    let content: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::json!({"type": "paragraph", "content": [{"type": "text", "text": l}]}))
        .collect();
    serde_json::json!({"type": "doc", "version": 1, "content": content})
}

/// Freshservice HTML: one `<p>` per non-empty line of `text`, every character that means something in HTML
/// escaped (a reason typed by a requester must not become markup in an agent's browser).
pub fn html(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut escaped = String::with_capacity(l.len());
            for c in l.chars() {
                match c {
                    '&' => escaped.push_str("&amp;"),
                    '<' => escaped.push_str("&lt;"),
                    '>' => escaped.push_str("&gt;"),
                    '"' => escaped.push_str("&quot;"),
                    '\'' => escaped.push_str("&#39;"),
                    c => escaped.push(c),
                }
            }
            format!("<p>{escaped}</p>")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_lower_case_labels() {
        assert_eq!(
            marker("01JD3AAAAAAAAAAAAAAAAAAAAA", "grant"),
            "tb-01jd3aaaaaaaaaaaaaaaaaaaaa-grant"
        );
    }

    #[test]
    fn rich_text_has_one_paragraph_per_line_and_html_is_escaped() {
        let doc = adf("a\n\nb");
        assert_eq!(doc["type"], "doc");
        assert_eq!(doc["content"].as_array().unwrap().len(), 2);
        assert_eq!(doc["content"][1]["content"][0]["text"], "b");
        assert_eq!(
            html("<b>x</b> & 'y'"),
            "<p>&lt;b&gt;x&lt;/b&gt; &amp; &#39;y&#39;</p>"
        );
    }

    #[test]
    fn the_grant_link_is_the_portal_s_grant_page_and_absent_without_a_portal() {
        assert_eq!(
            grant_link_line(
                Some("https://tb.example.com/"),
                "01JD3AAAAAAAAAAAAAAAAAAAAA"
            )
            .as_deref(),
            Some("Open in Ticketbound: https://tb.example.com/#/grant/01JD3AAAAAAAAAAAAAAAAAAAAA")
        );
        assert_eq!(grant_link_line(None, "01JD3"), None);
        assert_eq!(grant_link_line(Some("  "), "01JD3"), None);
    }

    #[test]
    fn summaries_stay_on_one_short_line() {
        assert_eq!(one_line("a\nb"), "a b");
        assert_eq!(one_line(&"x".repeat(400)).chars().count(), MAX_SUMMARY);
    }
}
