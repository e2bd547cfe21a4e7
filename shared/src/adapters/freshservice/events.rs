//! What a Freshservice workflow delivery says (DESIGN §9): the body only says which ticket changed
//! (placeholders render inconsistently), so the handler reads the ticket through the API before acting.

use serde_json::Value;

use super::is_ticket_id;
use crate::domain::ticket_events::DeliveryError;

/// The Freshservice ticket id a workflow delivery names: `ticket_id` (string or number, as the documented
/// template sends it), else `ticket.id`/`id`, also inside a `freshdesk_webhook` wrapper. A display id such as
/// `INC-123` gives `123`.
pub fn interpret_freshservice(body: &Value) -> Result<String, DeliveryError> {
    if !body.is_object() {
        return Err(DeliveryError::NotAnObject);
    }
    let root = if body["freshdesk_webhook"].is_object() {
        &body["freshdesk_webhook"]
    } else {
        body
    };
    let candidates = [
        &root["ticket_id"],
        &root["ticket"]["id_numeric"],
        &root["ticket"]["id"],
        &root["id"],
        &root["ticket_display_id"],
    ];
    for candidate in candidates {
        let raw = match candidate {
            Value::Number(n) => n.as_u64().map(|n| n.to_string()),
            Value::String(s) => Some(s.trim().to_owned()),
            _ => None,
        };
        let Some(raw) = raw else { continue };
        let digits = raw.rsplit_once('-').map_or(raw.as_str(), |(_, n)| n);
        let significant = digits.trim_start_matches('0');
        let id = if significant.is_empty() && !digits.is_empty() {
            "0"
        } else {
            significant
        };
        if digits.bytes().all(|b| b.is_ascii_digit()) && is_ticket_id(id) {
            return Ok(id.to_owned());
        }
    }
    Err(DeliveryError::NoTicket("no numeric `ticket_id`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::freshservice::MAX_TICKET_ID_DIGITS;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn freshservice_ticket_ids_parse_from_every_rendering() {
        assert_eq!(
            interpret_freshservice(
                &fixture("freshservice-webhook-template.json")
                    .to_string()
                    .replace("{{ticket.id_numeric}}", "264")
                    .parse::<Value>()
                    .unwrap()
            )
            .unwrap(),
            "264"
        );
        assert_eq!(
            interpret_freshservice(&json!({"ticket_id": 264})).unwrap(),
            "264"
        );
        assert_eq!(
            interpret_freshservice(&json!({"ticket": {"id": "33334", "status": 4}})).unwrap(),
            "33334"
        );
        assert_eq!(
            interpret_freshservice(&json!({"ticket_display_id": "INC-77"})).unwrap(),
            "77"
        );
        assert_eq!(
            interpret_freshservice(&json!({"freshdesk_webhook": {"ticket_id": "12"}})).unwrap(),
            "12"
        );
        assert!(interpret_freshservice(&json!({"ticket_id": "{{ticket.id_numeric}}"})).is_err());
        assert!(interpret_freshservice(&json!("264")).is_err());
    }

    #[test]
    fn a_ticket_id_has_at_most_nineteen_digits_as_in_every_read() {
        let longest = "9".repeat(MAX_TICKET_ID_DIGITS);
        assert_eq!(
            interpret_freshservice(&json!({ "ticket_id": longest })).unwrap(),
            longest
        );
        assert_eq!(
            interpret_freshservice(&json!({ "ticket_id": format!("1{longest}") })),
            Err(DeliveryError::NoTicket("no numeric `ticket_id`"))
        );
        // Leading zeros do not count: the id is the number.
        assert_eq!(
            interpret_freshservice(&json!({ "ticket_id": format!("0{longest}") })).unwrap(),
            longest
        );
        assert!(super::is_ticket_id(&longest));
        assert!(!super::is_ticket_id(&format!("1{longest}")));
    }
}
