//! Binding checks (DESIGN §1 rule 3) and the caller's own tickets: a ticket is bound only when it exists, is
//! open and is assigned to the requester, matched exactly by e-mail, or through the `people` mapping an admin
//! keeps for ticket systems that hide addresses.

use super::*;

impl Connections {
    /// `GET /v1/tickets?connection=&q=`: the caller's open tickets, found by the caller's e-mail; `q` keeps those
    /// whose key or summary contains it (case-insensitive).
    pub async fn my_tickets(
        &self,
        caller: &Caller,
        connection: &str,
        q: Option<&str>,
    ) -> Result<Page<TicketSummary>, ServiceError> {
        let mut session = self.open_for_api(connection).await?;
        let person = match session.connection.settings.people.get(&caller.email) {
            Some(id) => PersonLookup::Found(mapped_person(id, &caller.email)),
            None => {
                let found = session.system.find_person(&caller.email).await;
                self.observe(&mut session.connection, found, false)
                    .await
                    .map_err(|e| system_error(connection, e))?
            }
        };
        let person = match person {
            PersonLookup::Found(person) => person,
            PersonLookup::NotFound => {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
            PersonLookup::Unverifiable => {
                return Err(ServiceError::unprocessable(
                    "requester_not_verifiable",
                    unverifiable_message(connection, &caller.email, None),
                ));
            }
        };
        let listed = session.system.open_tickets_for(&person).await;
        let mut items = self
            .observe(&mut session.connection, listed, false)
            .await
            .map_err(|e| system_error(connection, e))?;
        if let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) {
            let q = q.to_lowercase();
            items.retain(|t| {
                t.key.to_lowercase().contains(&q) || t.summary.to_lowercase().contains(&q)
            });
        }
        Ok(Page { items, next: None })
    }
}

#[async_trait]
impl TicketVerifier for Connections {
    /// Rule 3: the ticket exists, is not closed, and is assigned to the requester, matched by e-mail (directly
    /// when the ticket system shows the assignee's e-mail, otherwise through the person that e-mail finds).
    async fn check_binding(
        &self,
        ticket: &TicketRef,
        requester_email: &str,
    ) -> Result<Option<String>, TicketCheckError> {
        let mut session = self.open_for_check(&ticket.connection).await?;
        let read = session.system.get_ticket(&ticket.key).await;
        let found = self
            .observe(&mut session.connection, read, false)
            .await
            .map_err(|e| unavailable_check(&ticket.connection, e))?;
        let Some(found) = found else {
            return Err(TicketCheckError::NotFound(
                ticket.key.clone(),
                ticket.connection.clone(),
            ));
        };
        if found.closed {
            return Err(TicketCheckError::Closed(ticket.key.clone()));
        }
        let stable_id = found.id;
        let Some(assignee) = found.assignee else {
            return Err(TicketCheckError::Unassigned(ticket.key.clone()));
        };
        if assignee.has_email(requester_email) {
            return Ok(stable_id);
        }
        let requester = normalize_email(requester_email);
        let lookup = match session.connection.settings.people.get(&requester) {
            // The admin's word is exact: it is compared, never searched.
            Some(id) => PersonLookup::Found(mapped_person(id, &requester)),
            // A visible address that is not the requester's: somebody else.
            None if assignee.email.is_some() => PersonLookup::NotFound,
            None => {
                let lookup = session.system.find_person(&requester).await;
                match self
                    .observe(&mut session.connection, lookup, false)
                    .await
                    .map_err(|e| unavailable_check(&ticket.connection, e))?
                {
                    PersonLookup::NotFound => PersonLookup::Unverifiable,
                    other => other,
                }
            }
        };
        match lookup {
            PersonLookup::Found(person) if person.id == assignee.id => Ok(stable_id),
            PersonLookup::Unverifiable => Err(TicketCheckError::RequesterNotVerifiable(
                ticket.key.clone(),
                unverifiable_message(&ticket.connection, &requester, Some(&ticket.key)),
            )),
            PersonLookup::Found(_) | PersonLookup::NotFound => {
                let who = assignee
                    .display_name
                    .or(assignee.email)
                    .unwrap_or_else(|| format!("another person (id {})", assignee.id));
                Err(TicketCheckError::NotAssigned(ticket.key.clone(), who))
            }
        }
    }
}

/// A requester as an admin mapped them on the connection.
pub(super) fn mapped_person(id: &str, email: &str) -> Person {
    Person {
        id: id.to_owned(),
        email: Some(email.to_owned()),
        display_name: None,
    }
}

/// Why a requester could not be matched exactly, and the one way to fix it.
pub(super) fn unverifiable_message(connection: &str, email: &str, key: Option<&str>) -> String {
    let what = match key {
        Some(key) => format!("ticket {key} is assigned to an account whose e-mail address"),
        None => "the accounts that match your e-mail address have addresses that".to_owned(),
    };
    format!(
        "{what} connection `{connection}` hides, and no account there shows exactly `{email}`, so Ticketbound cannot tell whether it is you (the ticket system's user search also matches longer addresses); an admin can map the address to its account: PATCH /v1/connections/{connection} with {{\"people\": {{\"{email}\": \"<account id>\"}}}}"
    )
}

/// Most people one connection maps by hand (the mapping lives in the connection's settings item).
pub const MAX_PEOPLE: usize = 1000;

/// Applies `input` (e-mail → account id, `null` removes) to the mapping, checking every entry first.
pub(super) fn merge_people(
    mut people: BTreeMap<String, String>,
    input: Option<&BTreeMap<String, Option<String>>>,
) -> Result<BTreeMap<String, String>, ServiceError> {
    let invalid = |m: String| ServiceError::unprocessable("invalid_people", m);
    for (email, id) in input.into_iter().flatten() {
        let email_key = normalize_email(email);
        if !looks_like_email(&email_key) {
            return Err(invalid(format!(
                "`people` maps e-mail addresses to account ids; `{}` is not an e-mail address",
                email.chars().take(80).collect::<String>()
            )));
        }
        match id.as_deref().map(str::trim) {
            None => {
                people.remove(&email_key);
            }
            Some(id)
                if !id.is_empty()
                    && id.len() <= 128
                    && !id.chars().any(|c| c.is_control() || c.is_whitespace()) =>
            {
                people.insert(email_key, id.to_owned());
            }
            Some(_) => {
                return Err(invalid(format!(
                    "the account id of `{email_key}` must be 1 to 128 characters without spaces (a Jira accountId, a Data Center user name or a Freshservice agent id), or null to remove the mapping"
                )));
            }
        }
    }
    if people.len() > MAX_PEOPLE {
        return Err(invalid(format!(
            "at most {MAX_PEOPLE} people may be mapped on one connection"
        )));
    }
    Ok(people)
}
