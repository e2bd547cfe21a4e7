//! Binding checks (DESIGN §1 rule 3) and the caller's own tickets: a ticket is bound only when it exists, is
//! open and is assigned to the requester, matched exactly: by an identity claim of the requester's token (an
//! Atlassian account id, a Data Center user name), by e-mail, or through the `people` mapping an admin keeps
//! for ticket systems that hide addresses.

use super::*;
use crate::domain::grant::BoundTicket;

impl Connections {
    /// `GET /v1/tickets?connection=&q=&cursor=`: one page of the caller's open tickets, the caller found exactly
    /// ([`Connections::requester`]); `q` narrows them to a key or summary in the ticket system's own query
    /// language; `next` is the cursor of the following page (`null` on the last).
    pub async fn my_tickets(
        &self,
        caller: &Caller,
        connection: &str,
        q: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<TicketSummary>, ServiceError> {
        let text = q.map(str::trim).filter(|q| !q.is_empty());
        if let Some(text) = text
            && (text.chars().count() > MAX_TICKET_QUERY || text.chars().any(char::is_control))
        {
            return Err(ServiceError::bad_request(
                "invalid_query",
                format!(
                    "`q` is at most {MAX_TICKET_QUERY} characters of text (a key such as SEC-42, or words of a summary)"
                ),
            ));
        }
        let page = cursor
            .map(|c| TicketCursor::decode(c, connection, text))
            .transpose()?;
        let mut session = self.open_for_api(connection).await?;
        let person = self
            .requester(&mut session, &caller.email, &caller.claimed)
            .await
            .map_err(|e| system_error(connection, e))?;
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
        let query = TicketQuery {
            text: text.map(str::to_owned),
            page,
        };
        let listed = session.system.open_tickets_page(&person, &query).await;
        let found = self.observe(&mut session.connection, listed, false).await;
        let found = match found {
            Err(TicketSystemError::InvalidPageToken(m)) => {
                return Err(ServiceError::bad_request(
                    "invalid_cursor",
                    format!(
                        "the `cursor` is not one this search gave out ({m}); start again without it"
                    ),
                ));
            }
            other => other.map_err(|e| system_error(connection, e))?,
        };
        Ok(Page {
            items: found.items,
            next: found
                .next
                .map(|token| TicketCursor::encode(connection, text, &token)),
        })
    }

    /// Who `email` is in the session's ticket system, as exactly as it can be told: an identity claim of the
    /// caller's token first (a Jira Cloud account id, a Data Center user name), then the admin's `people`
    /// mapping, then the ticket system's search, which counts only an exact visible address.
    pub(super) async fn requester(
        &self,
        session: &mut Session,
        email: &str,
        claimed: &ClaimedIdentity,
    ) -> Result<PersonLookup, TicketSystemError> {
        if !claimed.is_empty()
            && let Some(lookup) = self.claimed_person(session, claimed).await?
        {
            return Ok(lookup);
        }
        if let Some(id) = session
            .connection
            .settings
            .people
            .get(&normalize_email(email))
        {
            // The admin's word is exact: it is compared, never searched.
            return Ok(PersonLookup::Found(mapped_person(id, email)));
        }
        let found = session.system.find_person(email).await;
        self.observe(&mut session.connection, found, false).await
    }

    /// The person a token's claim names, when one applies to this ticket system. Only a failure is recorded on
    /// the connection: a claim may be answered without calling the ticket system (a Jira Cloud account id), which
    /// proves nothing about the credentials.
    async fn claimed_person(
        &self,
        session: &mut Session,
        claimed: &ClaimedIdentity,
    ) -> Result<Option<PersonLookup>, TicketSystemError> {
        match session.system.find_claimed_person(claimed).await {
            Ok(found) => Ok(found),
            Err(e) => self.observe(&mut session.connection, Err(e), false).await,
        }
    }

    /// Rule 3 for a requester whose token carried `claimed` (kept on the grant, so the approval's re-check
    /// matches the same way): the ticket exists, is not closed, and is assigned to the requester. `Ok` is the
    /// ticket as the ticket system answered it ([`BoundTicket`]: its canonical key, whatever the spelling asked
    /// for, and its stable id). A refusal never names the assignee: it answers whoever asks.
    pub async fn check_requester_binding(
        &self,
        ticket: &TicketRef,
        requester_email: &str,
        claimed: &ClaimedIdentity,
    ) -> Result<BoundTicket, TicketCheckError> {
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
        let bound = BoundTicket {
            key: self
                .systems
                .kind(session.connection.settings.kind)
                .canonical_key(&found.key),
            id: found.id,
        };
        let Some(assignee) = found.assignee else {
            return Err(TicketCheckError::Unassigned(ticket.key.clone()));
        };
        let requester = normalize_email(requester_email);
        let claim = if claimed.is_empty() {
            None
        } else {
            self.claimed_person(&mut session, claimed)
                .await
                .map_err(|e| unavailable_check(&ticket.connection, e))?
        };
        let lookup = match claim {
            // The token's claim is exact and decides, whatever the addresses say.
            Some(lookup) => lookup,
            None if assignee.has_email(&requester) => return Ok(bound),
            None => match session.connection.settings.people.get(&requester) {
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
            },
        };
        match lookup {
            PersonLookup::Found(person) if person.id == assignee.id => Ok(bound),
            PersonLookup::Unverifiable => Err(TicketCheckError::RequesterNotVerifiable(
                ticket.key.clone(),
                unverifiable_message(&ticket.connection, &requester, Some(&ticket.key)),
            )),
            PersonLookup::Found(_) | PersonLookup::NotFound => {
                Err(TicketCheckError::NotAssigned(ticket.key.clone()))
            }
        }
    }
}

impl Connections {
    /// `key` as the connection's ticket system spells it ([`TicketSystemKind::canonical_key`]): the form grants
    /// are stored under, so deliveries and reconciliation look them up by it. A connection that no longer
    /// exists has no rule: the key is kept as given.
    pub async fn canonical_key(&self, connection: &str, key: &str) -> Result<String, StoreError> {
        Ok(match self.kind_of(connection).await? {
            Some(kind) => kind.canonical_key(key),
            None => key.to_owned(),
        })
    }

    /// The rules of the connection's kind of ticket system; `None` when there is no such connection.
    pub async fn kind_of(
        &self,
        connection: &str,
    ) -> Result<Option<&'static dyn TicketSystemKind>, StoreError> {
        if !is_slug(connection) {
            return Ok(None);
        }
        Ok(self
            .store
            .get_connection(connection)
            .await?
            .map(|found| self.systems.kind(found.settings.kind)))
    }
}

#[async_trait]
impl TicketVerifier for Connections {
    /// Rule 3 for a requester known only by e-mail ([`Connections::check_requester_binding`] with no claim).
    async fn check_binding(
        &self,
        ticket: &TicketRef,
        requester_email: &str,
    ) -> Result<BoundTicket, TicketCheckError> {
        self.check_requester_binding(ticket, requester_email, &ClaimedIdentity::default())
            .await
    }
}

/// The cursor of `GET /v1/tickets`: the ticket system's own page token, bound to the connection and the search
/// text it was given for (base64url of a small JSON object; opaque to clients).
#[derive(Serialize, Deserialize)]
struct TicketCursor {
    c: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<String>,
    p: String,
}

impl TicketCursor {
    fn encode(connection: &str, q: Option<&str>, token: &str) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(&Self {
            c: connection.to_owned(),
            q: q.map(str::to_owned),
            p: token.to_owned(),
        })
        .expect("strings serialize");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// The page token in `cursor`, when it was given out for this connection and this `q`.
    fn decode(cursor: &str, connection: &str, q: Option<&str>) -> Result<String, ServiceError> {
        use base64::Engine;
        let invalid = || {
            ServiceError::bad_request(
                "invalid_cursor",
                "the `cursor` is not one this search gave out (for this connection and `q`); start again without it",
            )
        };
        if cursor.len() > 4096 {
            return Err(invalid());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor.trim())
            .map_err(|_| invalid())?;
        let parsed: Self = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if parsed.c != connection || parsed.q.as_deref() != q || parsed.p.is_empty() {
            return Err(invalid());
        }
        Ok(parsed.p)
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

/// Why a requester could not be matched exactly, and the ways to fix it.
pub(super) fn unverifiable_message(connection: &str, email: &str, key: Option<&str>) -> String {
    let what = match key {
        Some(key) => format!("ticket {key} is assigned to an account whose e-mail address"),
        None => "the accounts that match your e-mail address have addresses that".to_owned(),
    };
    format!(
        "{what} connection `{connection}` hides, and no account there shows exactly `{email}`, so Ticketbound cannot tell whether it is you (the ticket system's user search also matches longer addresses). Two exact ways: have the identity provider put your account in the token (ATLASSIAN_ACCOUNT_ID_CLAIM for a Jira Cloud account id, USERNAME_CLAIM for a Jira Data Center user name; docs/identity.md), or have an admin map the address to its account: PATCH /v1/connections/{connection} with {{\"people\": {{\"{email}\": \"<account id>\"}}}}"
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
