//! Who is calling (DESIGN §4): an e-mail and groups, and the roles they give.

/// The group names that carry roles (`APPROVER_GROUP`, `ADMIN_GROUP`).
#[derive(Clone, Debug)]
pub struct RoleGroups {
    pub approver: String,
    pub admin: String,
}

impl Default for RoleGroups {
    fn default() -> Self {
        Self {
            approver: "ticketbound-approvers".into(),
            admin: "ticketbound-admins".into(),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Lower-cased e-mail: the requester identity and the key for matching ticket assignees.
    pub email: String,
    pub groups: Vec<String>,
    pub approver: bool,
    pub admin: bool,
}

impl Caller {
    pub fn new(email: &str, groups: Vec<String>, roles: &RoleGroups) -> Self {
        let approver = groups.contains(&roles.approver);
        let admin = groups.contains(&roles.admin);
        Self {
            email: normalize_email(email),
            groups,
            approver,
            admin,
        }
    }

    /// Approvers and admins see every grant; others see their own.
    pub fn sees_all_grants(&self) -> bool {
        self.approver || self.admin
    }
}

/// E-mails compare case-insensitively everywhere in Ticketbound.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

/// A plausible e-mail (see [`Email`]).
pub fn looks_like_email(email: &str) -> bool {
    Email::parse(email).is_ok()
}

/// Why a string is not an e-mail address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an e-mail address (something@something, no spaces, at most 320 bytes)")]
pub struct EmailError;

/// A plausible e-mail address: something@something, no spaces or control characters, at most 320 bytes. Kept
/// as given; compare through [`normalize_email`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The address in `s`, if it looks like one.
    pub fn parse(s: &str) -> Result<Self, EmailError> {
        let ok = s.len() <= 320
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && s.split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(EmailError)
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a groups claim as API Gateway renders it: `"[a b c]"`, a JSON array `["a","b"]`, or a plain
/// comma- or space-separated list.
pub fn parse_groups(claim: &str) -> Vec<String> {
    let claim = claim.trim();
    if claim.starts_with('[')
        && let Ok(list) = serde_json::from_str::<Vec<String>>(claim)
    {
        return list
            .into_iter()
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect();
    }
    let inner = claim
        .strip_prefix('[')
        .and_then(|c| c.strip_suffix(']'))
        .unwrap_or(claim);
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_gateway_bracketed_groups_are_parsed() {
        assert_eq!(
            parse_groups("[ticketbound-approvers dev]"),
            vec!["ticketbound-approvers", "dev"]
        );
    }

    #[test]
    fn json_array_groups_are_parsed() {
        assert_eq!(
            parse_groups(r#"["ticketbound-admins","dev"]"#),
            vec!["ticketbound-admins", "dev"]
        );
    }

    #[test]
    fn comma_separated_groups_are_parsed() {
        assert_eq!(parse_groups("a, b,c"), vec!["a", "b", "c"]);
        assert!(parse_groups("").is_empty());
        assert!(parse_groups("[]").is_empty());
    }

    #[test]
    fn roles_come_from_the_configured_groups() {
        let roles = RoleGroups::default();
        let bob = Caller::new(
            "Bob@Example.com ",
            vec!["ticketbound-approvers".into()],
            &roles,
        );
        assert_eq!(bob.email, "bob@example.com");
        assert!(bob.approver && !bob.admin);
        let eve = Caller::new("eve@example.com", vec!["approvers".into()], &roles);
        assert!(!eve.approver && !eve.sees_all_grants());
    }

    #[test]
    fn email_shape_is_checked() {
        assert!(looks_like_email("a@b.c"));
        assert!(!looks_like_email("ab.c"));
        assert!(!looks_like_email("a b@c"));
        assert!(!looks_like_email("@c"));
    }

    #[test]
    fn an_email_parses_only_from_an_address_and_reads_back_as_given() {
        let email = Email::parse("Alice@Example.com").unwrap();

        assert_eq!(email.as_str(), "Alice@Example.com");
        assert_eq!(Email::parse("alice@"), Err(EmailError));
        assert_eq!(Email::parse("alice@example.com\n"), Err(EmailError));
        assert_eq!(
            Email::parse(&format!("{}@x.io", "a".repeat(320))),
            Err(EmailError)
        );
    }
}
