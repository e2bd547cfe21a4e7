//! Who is calling (DESIGN §4): an e-mail and groups, and the roles they give; what else a token may say about the
//! caller (an Atlassian account id, a directory user name: [`ClaimedIdentity`]); and which claim settings a
//! token of a known identity provider can satisfy ([`check_claim_settings`], docs/identity.md).

use serde::{Deserialize, Serialize};

/// The group names that carry roles (`APPROVER_GROUP`, `ADMIN_GROUP`, `AUDITOR_GROUP`).
#[derive(Clone, Debug)]
pub struct RoleGroups {
    pub approver: String,
    pub admin: String,
    /// Read-only oversight: every grant and audit trail, no decisions and no admin writes.
    pub auditor: String,
}

impl Default for RoleGroups {
    fn default() -> Self {
        Self {
            approver: "ticketbound-approvers".into(),
            admin: "ticketbound-admins".into(),
            auditor: "ticketbound-auditors".into(),
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
    /// A member of the auditor group: reads every grant and its audit trail, changes nothing.
    pub auditor: bool,
    /// Exact identities in ticket systems that the caller's (verified) token carries, if any.
    pub claimed: ClaimedIdentity,
}

impl Caller {
    pub fn new(email: &str, groups: Vec<String>, roles: &RoleGroups) -> Self {
        let approver = groups.contains(&roles.approver);
        let admin = groups.contains(&roles.admin);
        let auditor = groups.contains(&roles.auditor);
        Self {
            email: normalize_email(email),
            groups,
            approver,
            admin,
            auditor,
            claimed: ClaimedIdentity::default(),
        }
    }

    /// The caller with what their token says about them in ticket systems.
    pub fn with_claimed(mut self, claimed: ClaimedIdentity) -> Self {
        self.claimed = claimed;
        self
    }

    /// Approvers, admins and auditors see every grant and its audit trail; others see their own.
    pub fn sees_all_grants(&self) -> bool {
        self.approver || self.admin || self.auditor
    }

    /// Approvers and admins may end any grant; an auditor only looks.
    pub fn ends_any_grant(&self) -> bool {
        self.approver || self.admin
    }
}

/// Who the caller is in ticket systems, as a claim of their verified token says it (the configurable
/// `ATLASSIAN_ACCOUNT_ID_CLAIM` and `USERNAME_CLAIM`). Exact where a search by e-mail cannot be: Jira Cloud hides
/// addresses and matches prefixes; Data Center may mask them. A grant keeps what its requester's token said, so
/// the approval's re-check matches the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedIdentity {
    /// The Atlassian account id (Jira Cloud's `accountId`), e.g. `712020:cf20d007-…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atlassian_account_id: Option<String>,
    /// The directory user name (Jira Data Center's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl ClaimedIdentity {
    /// From claim values as a token carries them; a value that cannot be what it claims to be is dropped (and
    /// named in the answer's second part, for a log line), never used.
    pub fn from_claims(
        account_id: Option<&str>,
        username: Option<&str>,
    ) -> (Self, Vec<&'static str>) {
        let mut dropped = Vec::new();
        let account = account_id.map(str::trim).filter(|v| !v.is_empty());
        let atlassian_account_id = match account {
            Some(v) if is_atlassian_account_id(v) => Some(v.to_owned()),
            Some(_) => {
                dropped.push("atlassian account id");
                None
            }
            None => None,
        };
        let user = username.map(str::trim).filter(|v| !v.is_empty());
        let username = match user {
            Some(v) if v.len() <= 255 && !v.chars().any(char::is_control) => Some(v.to_owned()),
            Some(_) => {
                dropped.push("username");
                None
            }
            None => None,
        };
        (
            Self {
                atlassian_account_id,
                username,
            },
            dropped,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.atlassian_account_id.is_none() && self.username.is_none()
    }
}

/// An Atlassian account id: `712020:cf20d007-…`, or 24 hexadecimal digits on older accounts (1 to 128 of
/// letters, digits, `:`, `-` and `_`).
pub fn is_atlassian_account_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_'))
}

/// The identity providers whose tokens Ticketbound knows the claims of (docs/identity.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerKind {
    /// Amazon Cognito user pool: `https://cognito-idp.<region>.amazonaws.com/<pool id>`.
    Cognito,
    /// Microsoft Entra ID, v1.0 tokens: `https://sts.windows.net/<tenant>/`.
    EntraV1,
    /// Microsoft Entra ID, v2.0 tokens: `https://login.microsoftonline.com/<tenant>/v2.0`.
    EntraV2,
    /// Okta (org or custom authorization server): `https://<org>.okta.com[/oauth2/<server>]`.
    Okta,
    Other,
}

impl IssuerKind {
    /// The kind of an issuer URL (the JWT authorizer's `JwtIssuer`, `OIDC_ISSUER`).
    pub fn of(issuer: &str) -> Self {
        let Ok(url) = url::Url::parse(issuer.trim()) else {
            return Self::Other;
        };
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let path = url.path().trim_end_matches('/');
        if host.starts_with("cognito-idp.") && host.ends_with(".amazonaws.com") {
            Self::Cognito
        } else if host.starts_with("sts.windows.net") || host.starts_with("sts.chinacloudapi.cn") {
            Self::EntraV1
        } else if matches!(
            host.as_str(),
            "login.microsoftonline.com"
                | "login.microsoftonline.us"
                | "login.partner.microsoftonline.cn"
        ) {
            if path.ends_with("/v2.0") {
                Self::EntraV2
            } else {
                Self::EntraV1
            }
        } else if [
            ".okta.com",
            ".oktapreview.com",
            ".okta-emea.com",
            ".okta-gov.com",
        ]
        .iter()
        .any(|suffix| host.ends_with(suffix))
        {
            Self::Okta
        } else {
            Self::Other
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Cognito => "Amazon Cognito",
            Self::EntraV1 => "Microsoft Entra ID (v1.0 tokens)",
            Self::EntraV2 => "Microsoft Entra ID (v2.0 tokens)",
            Self::Okta => "Okta",
            Self::Other => "the identity provider",
        }
    }
}

/// The claim settings of the portal API, as configured (`EMAIL_CLAIM`, `GROUPS_CLAIM`,
/// `ATLASSIAN_ACCOUNT_ID_CLAIM`, `USERNAME_CLAIM`, the role groups and the issuer).
#[derive(Clone, Copy, Debug)]
pub struct ClaimSettings<'a> {
    pub issuer: Option<&'a str>,
    pub email: &'a str,
    pub groups: &'a str,
    pub account_id: Option<&'a str>,
    pub username: Option<&'a str>,
    pub roles: &'a RoleGroups,
}

/// Registered and provider claims that never hold an e-mail address, whatever the provider (OIDC Core,
/// RFC 7519, Cognito, Entra ID): a token cannot carry an address in them.
const NEVER_AN_ADDRESS: &[&str] = &[
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "jti",
    "azp",
    "nonce",
    "scope",
    "scp",
    "client_id",
    "cid",
    "token_use",
    "event_id",
    "origin_jti",
    "groups",
    "roles",
    "wids",
    "cognito:groups",
    "cognito:roles",
    "cognito:preferred_role",
    "oid",
    "tid",
    "ver",
    "amr",
    "acr",
    "at_hash",
    "c_hash",
    "sid",
    "idp",
];

/// Checks the claim settings against what tokens of the issuer can carry: `Err` with the reason when no token of
/// that issuer can satisfy them (the portal API then refuses to start), otherwise the warnings worth a log line
/// at start (what holds only if the provider is set up for it). Unknown issuers are checked only for what no
/// token can carry.
pub fn check_claim_settings(s: &ClaimSettings<'_>) -> Result<Vec<String>, String> {
    let kind = s.issuer.map_or(IssuerKind::Other, IssuerKind::of);
    let email = s.email.trim();
    let mut warnings = Vec::new();
    if email.is_empty() {
        return Err(
            "EMAIL_CLAIM is empty; name the claim that holds the caller's e-mail address".into(),
        );
    }
    if NEVER_AN_ADDRESS.contains(&email) {
        return Err(format!(
            "EMAIL_CLAIM={email}: `{email}` never holds an e-mail address in a token; name the claim that does (usually `email`{})",
            match kind {
                IssuerKind::EntraV1 => ", or `upn` for Entra ID v1.0 tokens",
                IssuerKind::EntraV2 => ", or `preferred_username` for Entra ID",
                _ => "",
            }
        ));
    }
    for (name, value) in [
        ("ATLASSIAN_ACCOUNT_ID_CLAIM", s.account_id),
        ("USERNAME_CLAIM", s.username),
    ] {
        if let Some(v) = value.map(str::trim)
            && (v == email || v == s.groups.trim())
        {
            return Err(format!(
                "{name}={v}: that claim already holds the caller's e-mail or groups; name the claim that holds the {}",
                if name == "USERNAME_CLAIM" {
                    "directory user name"
                } else {
                    "Atlassian account id"
                }
            ));
        }
    }
    match kind {
        IssuerKind::Cognito => {
            if email == "sub" {
                return Err("EMAIL_CLAIM=sub: in Amazon Cognito tokens `sub` is a UUID, never an address; use `email` and send ID tokens".into());
            }
            if email == "email" {
                warnings.push("Amazon Cognito: only ID tokens carry `email`; access tokens do not, unless a pre token generation trigger (event version 2) adds it. The portal sends ID tokens; other API clients must too (docs/identity.md).".into());
            } else if matches!(email, "cognito:username" | "username") {
                warnings.push(format!("Amazon Cognito: `{email}` is an address only in pools whose users sign in with their address as user name; `email` (ID tokens) is the reliable claim."));
            }
            if s.groups.trim() == "groups" {
                warnings.push("Amazon Cognito puts group membership in `cognito:groups`, not `groups`: set GROUPS_CLAIM=cognito:groups unless a pre token generation trigger adds `groups`.".into());
            }
            if let Some(claim) = s.account_id.map(str::trim)
                && !claim.starts_with("custom:")
            {
                warnings.push(format!("Amazon Cognito: a user-pool attribute appears in ID tokens as `custom:<name>`; ATLASSIAN_ACCOUNT_ID_CLAIM={claim} must be added by a pre token generation trigger."));
            }
        }
        IssuerKind::EntraV1 => {
            if email == "preferred_username" {
                return Err("EMAIL_CLAIM=preferred_username: Microsoft Entra ID v1.0 tokens (issuer https://sts.windows.net/<tenant>/) never carry `preferred_username`; use `upn`, or issue v2.0 tokens (accessTokenAcceptedVersion 2) and the issuer https://login.microsoftonline.com/<tenant>/v2.0".into());
            }
            if email == "email" {
                warnings.push("Microsoft Entra ID: `email` is an optional claim (add it under Token configuration) and is absent for users without a mailbox address; `upn` is always present in v1.0 tokens.".into());
            }
        }
        IssuerKind::EntraV2 => {
            if email == "unique_name" {
                return Err("EMAIL_CLAIM=unique_name: Microsoft Entra ID v2.0 tokens never carry `unique_name` (a v1.0 claim); use `preferred_username`, or `email` added as an optional claim".into());
            }
            if email == "email" || email == "upn" {
                warnings.push(format!("Microsoft Entra ID: `{email}` is an optional claim in v2.0 tokens (add it under Token configuration); `preferred_username` is always present."));
            }
        }
        IssuerKind::Okta => {
            if email == "email" {
                warnings.push("Okta: ID tokens carry `email` when the `email` scope is asked for; access tokens of a custom authorization server carry it only through a claim you add (their `sub` is the user's login).".into());
            }
            if s.groups.trim() == "groups" {
                warnings.push("Okta adds a `groups` claim only when you define one (the authorization server's Claims, or the app's Groups claim filter); without it every caller has no role.".into());
            }
        }
        IssuerKind::Other => {}
    }
    if matches!(kind, IssuerKind::EntraV1 | IssuerKind::EntraV2)
        && s.groups.trim() == "groups"
        && [&s.roles.approver, &s.roles.admin, &s.roles.auditor]
            .iter()
            .any(|g| !looks_like_guid(g))
    {
        warnings.push("Microsoft Entra ID: the `groups` claim holds group object ids, not names, unless the app is set to emit names; set APPROVER_GROUP, ADMIN_GROUP and AUDITOR_GROUP to the object ids, or use app roles (GROUPS_CLAIM=roles).".into());
    }
    Ok(warnings)
}

fn looks_like_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Why a verified token names no e-mail address, in words that say how to fix it for its issuer (the 401 of a
/// request whose token lacks `email_claim`). `issuer` and `token_use` are the token's own `iss` and `token_use`.
pub fn missing_email_hint(
    email_claim: &str,
    issuer: Option<&str>,
    token_use: Option<&str>,
) -> String {
    let kind = issuer.map_or(IssuerKind::Other, IssuerKind::of);
    match kind {
        IssuerKind::Cognito if token_use == Some("access") => format!(
            "this is an Amazon Cognito access token, which carries no `{email_claim}` claim: send the ID token (the portal does), or have a pre token generation trigger add the claim to access tokens"
        ),
        IssuerKind::EntraV1 | IssuerKind::EntraV2 => format!(
            "the token has no `{email_claim}` claim: {} sends it only when configured (Token configuration → optional claims); or set EMAIL_CLAIM to `{}`",
            kind.name(),
            if kind == IssuerKind::EntraV1 {
                "upn"
            } else {
                "preferred_username"
            }
        ),
        _ => format!(
            "the token has no `{email_claim}` claim; ask your administrator to have {} include it (docs/identity.md)",
            kind.name()
        ),
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
    fn an_auditor_sees_every_grant_but_ends_none() {
        let roles = RoleGroups::default();
        let ada = Caller::new(
            "ada@example.com",
            vec!["ticketbound-auditors".into()],
            &roles,
        );
        assert!(ada.auditor && ada.sees_all_grants());
        assert!(!ada.approver && !ada.admin && !ada.ends_any_grant());
    }

    fn settings<'a>(
        issuer: &'a str,
        email: &'a str,
        groups: &'a str,
        roles: &'a RoleGroups,
    ) -> ClaimSettings<'a> {
        ClaimSettings {
            issuer: Some(issuer),
            email,
            groups,
            account_id: None,
            username: None,
            roles,
        }
    }

    const COGNITO: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123";
    const ENTRA_V1: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
    const ENTRA_V2: &str =
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
    const OKTA: &str = "https://acme.okta.com/oauth2/default";

    #[test]
    fn issuers_are_told_apart_by_their_url() {
        assert_eq!(IssuerKind::of(COGNITO), IssuerKind::Cognito);
        assert_eq!(IssuerKind::of(ENTRA_V1), IssuerKind::EntraV1);
        assert_eq!(IssuerKind::of(ENTRA_V2), IssuerKind::EntraV2);
        assert_eq!(IssuerKind::of(OKTA), IssuerKind::Okta);
        assert_eq!(IssuerKind::of("https://acme.okta.com"), IssuerKind::Okta);
        assert_eq!(IssuerKind::of("https://idp.example.com"), IssuerKind::Other);
        assert_eq!(IssuerKind::of("not a url"), IssuerKind::Other);
        // A look-alike host is not Cognito.
        assert_eq!(
            IssuerKind::of("https://cognito-idp.eu-west-1.amazonaws.com.evil.example/x"),
            IssuerKind::Other
        );
    }

    #[test]
    fn claim_settings_no_token_of_the_issuer_can_satisfy_are_refused() {
        let roles = RoleGroups::default();
        for (issuer, email, groups, wanted) in [
            (
                "https://idp.example.com",
                "aud",
                "groups",
                "never holds an e-mail",
            ),
            (
                COGNITO,
                "cognito:groups",
                "cognito:groups",
                "never holds an e-mail",
            ),
            (COGNITO, "sub", "cognito:groups", "`sub` is a UUID"),
            (
                ENTRA_V1,
                "preferred_username",
                "roles",
                "never carry `preferred_username`",
            ),
            (
                ENTRA_V2,
                "unique_name",
                "roles",
                "never carry `unique_name`",
            ),
            (
                ENTRA_V2,
                "oid",
                "roles",
                "`preferred_username` for Entra ID",
            ),
        ] {
            let err = check_claim_settings(&settings(issuer, email, groups, &roles)).unwrap_err();
            assert!(err.contains(wanted), "{issuer} {email}: {err}");
            assert!(err.starts_with("EMAIL_CLAIM="), "{err}");
        }
        let mut same = settings(OKTA, "email", "groups", &roles);
        same.account_id = Some("email");
        let err = check_claim_settings(&same).unwrap_err();
        assert!(err.starts_with("ATLASSIAN_ACCOUNT_ID_CLAIM=email"), "{err}");
    }

    #[test]
    fn claim_settings_that_need_the_provider_set_up_are_warnings() {
        let roles = RoleGroups::default();
        let warned = |issuer, email, groups, wanted: &str| {
            let warnings = check_claim_settings(&settings(issuer, email, groups, &roles)).unwrap();
            assert!(
                warnings.iter().any(|w| w.contains(wanted)),
                "{issuer} {email} {groups}: {warnings:?}"
            );
        };
        warned(COGNITO, "email", "cognito:groups", "access tokens do not");
        warned(COGNITO, "email", "groups", "GROUPS_CLAIM=cognito:groups");
        warned(ENTRA_V2, "email", "roles", "optional claim");
        warned(ENTRA_V1, "upn", "groups", "object ids");
        warned(OKTA, "email", "groups", "only when you define one");
        // What every token of the issuer carries needs no warning.
        assert!(
            check_claim_settings(&settings(ENTRA_V2, "preferred_username", "roles", &roles))
                .unwrap()
                .is_empty()
        );
        assert!(
            check_claim_settings(&settings(
                "https://idp.example.com",
                "email",
                "groups",
                &roles
            ))
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn a_missing_email_says_how_to_fix_it_for_the_issuer() {
        let cognito = missing_email_hint("email", Some(COGNITO), Some("access"));
        assert!(cognito.contains("Cognito access token"), "{cognito}");
        assert!(
            cognito.contains("pre token generation trigger"),
            "{cognito}"
        );
        let entra = missing_email_hint("email", Some(ENTRA_V2), None);
        assert!(entra.contains("preferred_username"), "{entra}");
    }

    #[test]
    fn claimed_identities_are_kept_only_when_well_formed() {
        let (claimed, dropped) = ClaimedIdentity::from_claims(
            Some("712020:cf20d007-987c-41f6-a858-a378543f8c96"),
            Some(" alice "),
        );
        assert_eq!(
            claimed.atlassian_account_id.as_deref(),
            Some("712020:cf20d007-987c-41f6-a858-a378543f8c96")
        );
        assert_eq!(claimed.username.as_deref(), Some("alice"));
        assert!(dropped.is_empty());
        let (claimed, dropped) =
            ClaimedIdentity::from_claims(Some("\"a\" OR 1=1"), Some("bob\nadmin"));
        assert!(claimed.is_empty());
        assert_eq!(dropped, vec!["atlassian account id", "username"]);
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
