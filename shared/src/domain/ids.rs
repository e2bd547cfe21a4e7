//! Identifiers and random secrets.
//!
//! Grant ids are ULIDs: 26 Crockford base-32 characters whose first 48 bits are the creation time in
//! milliseconds, so sorting ids sorts grants by request time ("newest first" is a reverse sort on the id).

use time::OffsetDateTime;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// Only when the OS has no entropy source at all, which no supported platform lacks.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random number generator is unavailable");
}

/// A new ULID for `now`.
pub fn new_ulid(now: OffsetDateTime) -> String {
    let millis = (now.unix_timestamp_nanos() / 1_000_000).clamp(0, (1 << 48) - 1) as u128;
    let mut random = [0u8; 10];
    random_bytes(&mut random);
    let mut value = millis << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - i));
    }
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        *slot = CROCKFORD[((value >> shift) & 0x1f) as usize];
    }
    String::from_utf8(out.to_vec()).expect("Crockford alphabet is ASCII")
}

/// Whether `s` has the shape of a ULID (used to reject junk ids before they reach a store).
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26 && s.bytes().all(|b| CROCKFORD.contains(&b))
}

/// A new random secret: 32 bytes as 64 lowercase hex characters.
pub fn new_secret() -> String {
    let mut buf = [0u8; 32];
    random_bytes(&mut buf);
    hex::encode(buf)
}

/// Whether `s` is a usable slug id for resources and connections: 1–64 of `[a-z0-9-_]`, starting alphanumeric.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

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
    fn secrets_are_long_and_distinct() {
        let a = new_secret();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_secret());
    }
}
