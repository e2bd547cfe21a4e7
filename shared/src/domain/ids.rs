//! Identifiers and random secrets.
//!
//! Grant ids are ULIDs: 26 Crockford base-32 characters whose first 48 bits are the creation time in
//! milliseconds, so sorting ids sorts grants by request time ("newest first" is a reverse sort on the id).
//!
//! Values that arrive as strings and have rules are newtypes whose `parse` is the only way in: [`GrantId`],
//! [`Slug`] (resource and connection ids), [`TicketKey`]. The `is_*` functions are thin wrappers over them for
//! callers not yet holding the newtypes.

use std::fmt;

use time::OffsetDateTime;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// Only when the OS has no entropy source at all, which no supported platform lacks.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random number generator is unavailable");
}

/// The last id this process made, so ids made within one millisecond still sort in the order they were made.
static LAST_ULID: std::sync::Mutex<Option<ulid::Ulid>> = std::sync::Mutex::new(None);

/// A new ULID for `now`: its first 48 bits are `now` in milliseconds; within the millisecond of the previous
/// id of this process it is that id plus one (monotonic, as the ULID specification describes), otherwise its
/// 80 other bits are random. An id for an earlier time than the previous one keeps its own time (a clock that
/// moved back, or a test's clock) rather than borrowing the later one, so an id's time is always its grant's.
pub fn new_ulid(now: OffsetDateTime) -> String {
    let millis = (now.unix_timestamp_nanos() / 1_000_000).clamp(0, (1 << 48) - 1) as u64;
    let mut last = LAST_ULID
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let next = match *last {
        // `Err` only when 2^80 ids were made in one millisecond: then a fresh random one.
        Some(previous) if previous.timestamp_ms() == millis => previous.increment().ok(),
        _ => None,
    };
    let id = next.unwrap_or_else(|| {
        let mut random = [0u8; 16];
        random_bytes(&mut random);
        ulid::Ulid::from_parts(millis, u128::from_be_bytes(random))
    });
    if last.is_none_or(|previous| previous.timestamp_ms() <= millis) {
        *last = Some(id);
    }
    id.to_string()
}

/// Whether `s` has the shape of a ULID (used to reject junk ids before they reach a store).
pub fn is_ulid(s: &str) -> bool {
    GrantId::parse(s).is_ok()
}

/// A new random secret: 32 bytes as 64 lowercase hex characters.
pub fn new_secret() -> String {
    let mut buf = [0u8; 32];
    random_bytes(&mut buf);
    hex::encode(buf)
}

/// Whether `s` is a usable slug id for resources and connections (see [`Slug`]).
pub fn is_slug(s: &str) -> bool {
    Slug::parse(s).is_ok()
}

/// Why a string is not the identifier it was meant to be. The message quotes no more than the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("not a grant id (26 Crockford base-32 characters)")]
    GrantId,
    #[error("not an id: 1 to 64 of `a-z`, `0-9`, `-` and `_`, starting with a letter or digit")]
    Slug,
    #[error(
        "not a ticket key: 1 to {MAX_TICKET_KEY} of letters, digits, `-` and `_` (SEC-42, 1234)"
    )]
    TicketKey,
}

/// Implements the read-only side shared by every string newtype.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value as an owned `String` (for the stores and the wire, which keep text).
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

/// A grant id: a ULID ([`new_ulid`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantId(String);

impl GrantId {
    /// A new id for a grant requested at `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self(new_ulid(now))
    }

    /// The id in `s`, if it has the shape of a ULID.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 26 && s.bytes().all(|b| CROCKFORD.contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::GrantId)
        }
    }
}
string_newtype!(GrantId);

/// A slug id of a resource or a connection: 1–64 of `[a-z0-9-_]`, starting alphanumeric (safe in URLs, keys
/// and schedule names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slug(String);

impl Slug {
    /// The slug in `s`, if it is one.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Slug)
        }
    }
}
string_newtype!(Slug);

/// The longest ticket key accepted.
pub const MAX_TICKET_KEY: usize = 128;

/// A ticket's key as people write it (`SEC-42` in Jira, `1234` in Freshservice); which keys a ticket system
/// knows is its own business, this only keeps junk out of stores and URLs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketKey(String);

impl TicketKey {
    /// The key in `s`, if it has the shape of one.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_TICKET_KEY
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::TicketKey)
        }
    }
}
string_newtype!(TicketKey);

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ulids_sort_by_creation_time() {
        let earlier = new_ulid(datetime!(2026-01-01 00:00:00 UTC));
        let later = new_ulid(datetime!(2026-01-01 00:00:00.002 UTC));
        assert!(is_ulid(&earlier) && is_ulid(&later));
        assert!(earlier < later);
    }

    #[test]
    fn ulids_made_within_one_millisecond_sort_in_the_order_they_were_made() {
        // Later than any other test's clock, so ids of other tests made meanwhile cannot interleave.
        let now = datetime!(2100-05-01 12:00:00.000 UTC);

        let ids: Vec<String> = (0..100).map(|_| new_ulid(now)).collect();

        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(
            ids.iter().all(|id| id[..10] == ids[0][..10]),
            "one timestamp"
        );
    }

    #[test]
    fn a_ulid_for_an_earlier_time_keeps_its_own_time() {
        let later = new_ulid(datetime!(2026-05-02 00:00:00 UTC));

        let earlier = new_ulid(datetime!(2026-05-01 00:00:00 UTC));

        assert!(earlier < later);
    }

    #[test]
    fn ulids_are_unique_within_a_millisecond() {
        let now = OffsetDateTime::now_utc();
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_ulid(now)).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn slugs_are_lowercase_and_bounded() {
        assert!(is_slug("prod-db"));
        assert!(is_slug("jira_main2"));
        assert!(!is_slug(""));
        assert!(!is_slug("-x"));
        assert!(!is_slug("Prod"));
        assert!(!is_slug("a/b"));
        assert!(!is_slug(&"a".repeat(65)));
    }

    #[test]
    fn a_grant_id_parses_only_from_a_ulid() {
        let id = GrantId::new(OffsetDateTime::now_utc());

        assert_eq!(GrantId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(GrantId::parse("01HZ"), Err(IdError::GrantId));
        assert_eq!(
            GrantId::parse(&id.as_str().to_lowercase()),
            Err(IdError::GrantId)
        );
        assert_eq!(
            GrantId::parse("01HZZZZZZZZZZZZZZZZZZZZZZI"),
            Err(IdError::GrantId)
        );
    }

    #[test]
    fn ticket_keys_are_short_and_plain() {
        assert_eq!(TicketKey::parse("SEC-42").unwrap().as_str(), "SEC-42");
        assert!(TicketKey::parse("1234").is_ok());
        assert_eq!(TicketKey::parse(""), Err(IdError::TicketKey));
        assert_eq!(TicketKey::parse("SEC 42"), Err(IdError::TicketKey));
        assert_eq!(TicketKey::parse("../x"), Err(IdError::TicketKey));
        assert_eq!(
            TicketKey::parse(&"A".repeat(MAX_TICKET_KEY + 1)),
            Err(IdError::TicketKey)
        );
    }

    #[test]
    fn a_slug_reads_back_as_given() {
        let slug = Slug::parse("prod-db").unwrap();

        assert_eq!(slug.to_string(), "prod-db");
        assert_eq!(Slug::try_from("Prod".to_owned()), Err(IdError::Slug));
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = new_secret();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_secret());
    }
}
