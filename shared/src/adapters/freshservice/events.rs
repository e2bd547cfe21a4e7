//! What a Freshservice workflow delivery says (DESIGN §9): the body only says which ticket changed
//! (placeholders render inconsistently), so the handler reads the ticket through the API before acting.
//!
//! The body is read into a typed struct (`FreshserviceBody`) of lenient fields (see
//! `adapters::lenient_json`): whatever an operator's template renders, a field of an unexpected type reads as
//! absent and the next place an id may be is tried.

use serde::Deserialize;
use serde_json::Value;

use super::is_ticket_id;
use crate::adapters::lenient_json::{IdText, Object};
use crate::domain::connection::{ConnectionSettings, WebhookSecrets};
use crate::domain::ticket_events::{Delivery, DeliveryError};
use crate::domain::webhook_auth::basic_auth_password;
use crate::ports::{DeliveryHeaders, DeliveryRefusal, DeliveryRules};

/// A workflow delivery: the places a ticket id may be, at the top or inside Freshdesk's *Simple* mode wrapper
/// `{"freshdesk_webhook": {...}}` (which, when it is an object, is read instead of the top).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FreshserviceBody {
    freshdesk_webhook: Object<TicketIdPlaces>,
    #[serde(flatten)]
    top: TicketIdPlaces,
}

/// Where a ticket id may be, in the order they are tried: `ticket_id` (the documented template's
/// `{{ticket.id_numeric}}`), `ticket.id_numeric`, `ticket.id`, `id`, then `ticket_display_id` (`{{ticket.id}}`,
/// such as `INC-123`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TicketIdPlaces {
    ticket_id: IdText,
    ticket: Object<TicketIds>,
    id: IdText,
    ticket_display_id: IdText,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TicketIds {
    id_numeric: IdText,
    id: IdText,
}

impl TicketIdPlaces {
    fn candidates(&self) -> impl Iterator<Item = &str> {
        let ticket = self.ticket.get();
        [
            Some(&self.ticket_id),
            ticket.map(|t| &t.id_numeric),
            ticket.map(|t| &t.id),
            Some(&self.id),
            Some(&self.ticket_display_id),
        ]
        .into_iter()
        .flatten()
        .filter_map(IdText::get)
    }
}

/// The ticket number a rendered id stands for: its digits after the last `-` (a display id `INC-123` gives
/// `123`), without leading zeros, within the length every read accepts.
fn ticket_number(raw: &str) -> Option<String> {
    let digits = raw.rsplit_once('-').map_or(raw, |(_, n)| n);
    let significant = digits.trim_start_matches('0');
    let id = if significant.is_empty() && !digits.is_empty() {
        "0"
    } else {
        significant
    };
    (digits.bytes().all(|b| b.is_ascii_digit()) && is_ticket_id(id)).then(|| id.to_owned())
}

/// The Freshservice ticket id a workflow delivery names: `ticket_id` (string or number, as the documented
/// template sends it), else `ticket.id`/`id`, also inside a `freshdesk_webhook` wrapper. A display id such as
/// `INC-123` gives `123`.
pub fn interpret_freshservice(body: &Value) -> Result<String, DeliveryError> {
    let Object(Some(body)) = Object::<FreshserviceBody>::deserialize(body).unwrap_or_default()
    else {
        return Err(DeliveryError::NotAnObject);
    };
    let places = body.freshdesk_webhook.get().unwrap_or(&body.top);
    places
        .candidates()
        .find_map(ticket_number)
        .ok_or(DeliveryError::NoTicket("no numeric `ticket_id`"))
}

/// The message of a refused Freshservice delivery.
const NO_SECRET: &str = "the delivery is not signed with, and does not carry, an active webhook secret of this connection";

/// Freshservice's deliveries for the one webhook extractor: it does not sign, so the proof is a header
/// (`X-Ticketbound-Secret`, or a Basic credential whose password is the secret), judged before the body is read;
/// the body only names the ticket, which is re-read before anything ends.
pub struct FreshserviceDeliveries;

impl DeliveryRules for FreshserviceDeliveries {
    fn proof_needs_body(&self, _headers: &dyn DeliveryHeaders) -> bool {
        false
    }

    fn authenticate(
        &self,
        _settings: &ConnectionSettings,
        headers: &dyn DeliveryHeaders,
        _body: &[u8],
        secrets: &WebhookSecrets,
    ) -> Result<(), DeliveryRefusal> {
        // The header, when present, decides alone (a garbled one is a wrong one, not rescued by Basic auth).
        headers
            .present("x-ticketbound-secret")
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .present("authorization")
                    .and_then(basic_auth_password)
            })
            .is_some_and(|presented| secrets.accepts_shared_secret(&presented))
            .then_some(())
            .ok_or(DeliveryRefusal {
                reason: "wrong_or_missing_secret",
                message: NO_SECRET,
            })
    }

    fn interpret(
        &self,
        settings: &ConnectionSettings,
        _headers: &dyn DeliveryHeaders,
        body: &Value,
    ) -> Result<Delivery, String> {
        let key = interpret_freshservice(body)
            .map_err(|e| format!("{e}; use the body template in the README"))?;
        Ok(Delivery::Named {
            connection: settings.id.clone(),
            key,
        })
    }
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
