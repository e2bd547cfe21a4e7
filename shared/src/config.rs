//! Configuration, read once at start from the environment (names as in `template.yaml`, DESIGN §3).

use crate::domain::IsoDuration;
use crate::domain::identity::{ClaimSettings, RoleGroups, check_claim_settings};

/// Every variable a Lambda function reads. `template.yaml` sets exactly these for each function (a test checks).
pub const COMMON_VARS: &[&str] = &[
    "TABLE_NAME",
    "SCHEDULE_GROUP",
    "EXPIRY_FUNCTION_ARN",
    "SCHEDULER_ROLE_ARN",
    "SCHEDULE_DLQ_ARN",
    "SECRET_PREFIX",
    "MAX_DURATION",
    // Notifications (service/notifications.rs): the secret holding the channels, and where messages link to.
    "NOTIFICATIONS_SECRET",
    "PORTAL_URL",
];
/// What the portal API reads on top of [`COMMON_VARS`]: identity, and the portal's OpenID Connect sign-in
/// (the `OIDC_*` variables; `OIDC_ISSUER` is the JWT authorizer's issuer, so the page signs in where the API
/// checks).
pub const API_VARS: &[&str] = &[
    "APPROVER_GROUP",
    "ADMIN_GROUP",
    "AUDITOR_GROUP",
    "EMAIL_CLAIM",
    "GROUPS_CLAIM",
    "ATLASSIAN_ACCOUNT_ID_CLAIM",
    "USERNAME_CLAIM",
    "OIDC_ISSUER",
    "OIDC_CLIENT_ID",
    "OIDC_AUTHORIZATION_ENDPOINT",
    "OIDC_TOKEN_ENDPOINT",
    "OIDC_SCOPES",
    "PENDING_FOR",
];

/// The portal's OpenID Connect sign-in on AWS (authorization code with PKCE, a public client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer, as in the tokens' `iss` (the JWT authorizer's `JwtIssuer`).
    pub issuer: String,
    /// The public client the page signs in as; its ID token's `aud`, which the JWT authorizer accepts.
    pub client_id: String,
    /// Where the browser is sent to sign in (`https://`).
    pub authorization_endpoint: String,
    /// Where the page exchanges the code for tokens (`https://`, reachable from the browser with CORS).
    pub token_endpoint: String,
    /// Space-separated scopes; `openid` is always among them.
    pub scopes: String,
}

/// What the expiry function reads on top of [`COMMON_VARS`]: the reconciliation interval.
pub const EXPIRY_VARS: &[&str] = &["RECONCILE_EVERY"];

#[derive(Debug, Clone, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[derive(Clone, Debug)]
pub struct Config {
    pub table_name: String,
    pub schedule_group: String,
    pub expiry_function_arn: String,
    pub scheduler_role_arn: String,
    pub schedule_dlq_arn: String,
    pub secret_prefix: String,
    pub max_duration: IsoDuration,
    pub roles: RoleGroups,
    pub email_claim: String,
    pub groups_claim: String,
    /// `ATLASSIAN_ACCOUNT_ID_CLAIM`: a claim holding the caller's Atlassian account id (exact identity on Jira
    /// Cloud, preferred over a search by e-mail); unset when tokens carry none.
    pub atlassian_account_id_claim: Option<String>,
    /// `USERNAME_CLAIM`: a claim holding the caller's directory user name (looked up exactly on Jira Data
    /// Center); unset when tokens carry none.
    pub username_claim: Option<String>,
    /// What the claim settings need from the identity provider to work (`OIDC_ISSUER` tells which one), for a
    /// log line at start (docs/identity.md). A setting no token of that issuer can satisfy is an error instead.
    pub identity_warnings: Vec<String>,
    /// The portal's sign-in; `None` while `OIDC_CLIENT_ID` is unset (the page then says how to set it up).
    pub oidc: Option<OidcSettings>,
    /// `RECONCILE_EVERY` (default `PT15M`); `None` when `off`.
    pub reconcile_every: Option<IsoDuration>,
    /// `NOTIFICATIONS_SECRET`: the Secrets Manager secret (name or ARN, under `SECRET_PREFIX`) holding the
    /// notification channels; `None`: no notifications.
    pub notifications_secret: Option<String>,
    /// `PORTAL_URL`: the portal's public base URL, which messages link to.
    pub portal_url: Option<String>,
    /// `PENDING_FOR` (default `P1D`): how long a request waits for its approvals before it is cancelled as
    /// `approval_timed_out`.
    pub pending_for: IsoDuration,
}

/// Parses `PENDING_FOR`: an ISO-8601 duration of at least a second.
pub fn parse_pending_for(value: &str) -> Result<IsoDuration, String> {
    let wait = IsoDuration::parse(value.trim()).map_err(|e| e.to_string())?;
    if wait.seconds() < 1 {
        return Err("a request must be able to wait at least one second".into());
    }
    Ok(wait)
}

/// Parses a reconciliation interval: an ISO-8601 duration of at least a second, or `off`.
pub fn parse_reconcile_every(value: &str) -> Result<Option<IsoDuration>, String> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let every = IsoDuration::parse(value.trim()).map_err(|e| e.to_string())?;
    if every.seconds() < 1 {
        return Err("the interval must be at least one second (or `off`)".into());
    }
    Ok(Some(every))
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required =
            |name: &str| lookup(name).ok_or_else(|| ConfigError(format!("{name} is not set")));
        let or = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        let defaults = RoleGroups::default();
        let max_duration = or("MAX_DURATION", "P7D");
        let roles = RoleGroups {
            approver: or("APPROVER_GROUP", &defaults.approver),
            admin: or("ADMIN_GROUP", &defaults.admin),
            auditor: or("AUDITOR_GROUP", &defaults.auditor),
        };
        let email_claim = or("EMAIL_CLAIM", "email");
        let groups_claim = or("GROUPS_CLAIM", "groups");
        let atlassian_account_id_claim = lookup("ATLASSIAN_ACCOUNT_ID_CLAIM");
        let username_claim = lookup("USERNAME_CLAIM");
        let issuer = lookup("OIDC_ISSUER");
        let identity_warnings = check_claim_settings(&ClaimSettings {
            issuer: issuer.as_deref(),
            email: &email_claim,
            groups: &groups_claim,
            account_id: atlassian_account_id_claim.as_deref(),
            username: username_claim.as_deref(),
            roles: &roles,
        })
        .map_err(|e| ConfigError(format!("identity claims: {e} (docs/identity.md)")))?;
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            schedule_group: required("SCHEDULE_GROUP")?,
            expiry_function_arn: required("EXPIRY_FUNCTION_ARN")?,
            scheduler_role_arn: required("SCHEDULER_ROLE_ARN")?,
            schedule_dlq_arn: required("SCHEDULE_DLQ_ARN")?,
            secret_prefix: or("SECRET_PREFIX", "ticketbound/"),
            max_duration: IsoDuration::parse(&max_duration)
                .map_err(|e| ConfigError(format!("MAX_DURATION: {e}")))?,
            roles,
            email_claim,
            groups_claim,
            atlassian_account_id_claim,
            username_claim,
            identity_warnings,
            oidc: oidc_settings(&lookup)?,
            reconcile_every: parse_reconcile_every(&or("RECONCILE_EVERY", "PT15M"))
                .map_err(|e| ConfigError(format!("RECONCILE_EVERY: {e}")))?,
            notifications_secret: notifications_secret(
                &lookup,
                &or("SECRET_PREFIX", "ticketbound/"),
            )?,
            portal_url: lookup("PORTAL_URL"),
            pending_for: parse_pending_for(&or("PENDING_FOR", "P1D"))
                .map_err(|e| ConfigError(format!("PENDING_FOR: {e}")))?,
        })
    }
}

/// `NOTIFICATIONS_SECRET`, which must name a secret under `SECRET_PREFIX`: the only secrets the functions may
/// read (template.yaml).
fn notifications_secret(
    lookup: &impl Fn(&str) -> Option<String>,
    prefix: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(secret) = lookup("NOTIFICATIONS_SECRET").map(|s| s.trim().to_owned()) else {
        return Ok(None);
    };
    let name = match secret.split_once(":secret:") {
        Some((_, name)) if secret.starts_with("arn:") => name,
        _ => secret.as_str(),
    };
    if !name.starts_with(prefix) {
        return Err(ConfigError(format!(
            "NOTIFICATIONS_SECRET must name a secret under SECRET_PREFIX (`{prefix}`), the only secrets the functions may read, such as `{prefix}_notifications`"
        )));
    }
    Ok(Some(secret))
}

impl Config {
    /// The claims the portal API reads the caller from.
    pub fn claim_names(&self) -> crate::http::JwtClaimNames {
        crate::http::JwtClaimNames {
            email: self.email_claim.clone(),
            groups: self.groups_claim.clone(),
            atlassian_account_id: self.atlassian_account_id_claim.clone(),
            username: self.username_claim.clone(),
        }
    }
}

/// The portal's sign-in settings: all of them once `OIDC_CLIENT_ID` is set, none before.
fn oidc_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<OidcSettings>, ConfigError> {
    let Some(client_id) = lookup("OIDC_CLIENT_ID") else {
        return Ok(None);
    };
    let https = |name: &str| -> Result<String, ConfigError> {
        let value = lookup(name).ok_or_else(|| {
            ConfigError(format!(
                "{name} is not set (the portal's sign-in needs it once OIDC_CLIENT_ID is set)"
            ))
        })?;
        match url::Url::parse(&value) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Ok(value),
            _ => Err(ConfigError(format!("{name} must be an https:// URL"))),
        }
    };
    let mut scopes: Vec<String> = lookup("OIDC_SCOPES")
        .unwrap_or_else(|| "openid email profile".to_owned())
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".to_owned());
    }
    Ok(Some(OidcSettings {
        issuer: https("OIDC_ISSUER")?,
        client_id,
        authorization_endpoint: https("OIDC_AUTHORIZATION_ENDPOINT")?,
        token_endpoint: https("OIDC_TOKEN_ENDPOINT")?,
        scopes: scopes.join(" "),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const REQUIRED: &[(&str, &str)] = &[
        ("TABLE_NAME", "t"),
        ("SCHEDULE_GROUP", "g"),
        ("EXPIRY_FUNCTION_ARN", "arn:f"),
        ("SCHEDULER_ROLE_ARN", "arn:r"),
        ("SCHEDULE_DLQ_ARN", "arn:q"),
    ];

    #[test]
    fn defaults_apply_to_optional_settings() {
        let config = Config::from_lookup(env(REQUIRED)).unwrap();
        assert_eq!(config.roles.approver, "ticketbound-approvers");
        assert_eq!(config.roles.auditor, "ticketbound-auditors");
        assert_eq!(config.email_claim, "email");
        assert_eq!(config.max_duration.seconds(), 7 * 86_400);
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        let err = Config::from_lookup(env(&REQUIRED[1..])).unwrap_err();
        assert!(err.0.contains("TABLE_NAME"));
    }

    #[test]
    fn the_portal_sign_in_is_off_until_a_client_id_is_set() {
        let config = Config::from_lookup(env(REQUIRED)).unwrap();
        assert_eq!(config.oidc, None);
    }

    #[test]
    fn the_portal_sign_in_needs_https_endpoints_and_always_asks_for_openid() {
        let mut pairs = REQUIRED.to_vec();
        pairs.extend([
            (
                "OIDC_ISSUER",
                "https://cognito-idp.eu-west-1.amazonaws.com/pool",
            ),
            ("OIDC_CLIENT_ID", "client-1"),
            (
                "OIDC_AUTHORIZATION_ENDPOINT",
                "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/authorize",
            ),
            (
                "OIDC_TOKEN_ENDPOINT",
                "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/token",
            ),
            ("OIDC_SCOPES", "email,profile"),
        ]);
        let oidc = Config::from_lookup(env(&pairs)).unwrap().oidc.unwrap();
        assert_eq!(oidc.client_id, "client-1");
        assert_eq!(oidc.scopes, "openid email profile");

        pairs.push(("OIDC_TOKEN_ENDPOINT", "http://idp.example/token"));
        let err = Config::from_lookup(env(&pairs)).unwrap_err();
        assert!(
            err.0
                .contains("OIDC_TOKEN_ENDPOINT must be an https:// URL"),
            "{}",
            err.0
        );
    }

    #[test]
    fn reconciliation_defaults_to_fifteen_minutes_and_can_be_turned_off() {
        let config = Config::from_lookup(env(REQUIRED)).unwrap();
        assert_eq!(config.reconcile_every.map(|d| d.seconds()), Some(900));
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("RECONCILE_EVERY", "off"));
        assert!(
            Config::from_lookup(env(&pairs))
                .unwrap()
                .reconcile_every
                .is_none()
        );
    }

    #[test]
    fn a_bad_reconciliation_interval_is_refused_with_its_name() {
        for bad in ["sometimes", "PT0S", "-PT5M"] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push(("RECONCILE_EVERY", bad));
            let err = Config::from_lookup(env(&pairs)).unwrap_err();
            assert!(err.0.starts_with("RECONCILE_EVERY"), "{bad}: {}", err.0);
        }
    }

    #[test]
    fn the_notifications_secret_must_be_under_the_secret_prefix() {
        assert_eq!(
            Config::from_lookup(env(REQUIRED))
                .unwrap()
                .notifications_secret,
            None
        );
        for good in [
            "ticketbound/_notifications",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ticketbound/_notifications-AbCdEf",
        ] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push(("NOTIFICATIONS_SECRET", good));
            let config = Config::from_lookup(env(&pairs)).unwrap();
            assert_eq!(config.notifications_secret.as_deref(), Some(good));
        }
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("NOTIFICATIONS_SECRET", "other/notifications"));
        let err = Config::from_lookup(env(&pairs)).unwrap_err();
        assert!(err.0.contains("SECRET_PREFIX"), "{}", err.0);
    }

    #[test]
    fn identity_claims_are_optional_and_read_when_set() {
        let config = Config::from_lookup(env(REQUIRED)).unwrap();
        assert_eq!(config.atlassian_account_id_claim, None);
        assert_eq!(config.username_claim, None);
        let mut pairs = REQUIRED.to_vec();
        pairs.extend([
            ("ATLASSIAN_ACCOUNT_ID_CLAIM", "atlassian_account_id"),
            ("USERNAME_CLAIM", "samaccountname"),
        ]);
        let config = Config::from_lookup(env(&pairs)).unwrap();
        let names = config.claim_names();
        assert_eq!(
            names.atlassian_account_id.as_deref(),
            Some("atlassian_account_id")
        );
        assert_eq!(names.username.as_deref(), Some("samaccountname"));
    }

    #[test]
    fn the_api_refuses_to_start_with_claims_no_token_of_its_issuer_carries() {
        let mut pairs = REQUIRED.to_vec();
        pairs.extend([
            (
                "OIDC_ISSUER",
                "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
            ),
            ("EMAIL_CLAIM", "preferred_username"),
        ]);
        let err = Config::from_lookup(env(&pairs)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("configuration: identity claims: EMAIL_CLAIM=preferred_username"),
            "{err}"
        );
        assert!(err.0.contains("use `upn`"), "{err}");

        let mut cognito = REQUIRED.to_vec();
        cognito.extend([
            (
                "OIDC_ISSUER",
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123",
            ),
            ("GROUPS_CLAIM", "groups"),
        ]);
        let config = Config::from_lookup(env(&cognito)).unwrap();
        assert!(
            config
                .identity_warnings
                .iter()
                .any(|w| w.contains("access tokens do not")),
            "{:?}",
            config.identity_warnings
        );
    }

    #[test]
    fn a_pending_request_waits_a_day_unless_pending_for_says_otherwise() {
        let config = Config::from_lookup(env(REQUIRED)).unwrap();
        assert_eq!(config.pending_for.seconds(), 86_400);
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("PENDING_FOR", "PT8H"));
        assert_eq!(
            Config::from_lookup(env(&pairs))
                .unwrap()
                .pending_for
                .seconds(),
            8 * 3_600
        );
    }

    #[test]
    fn a_bad_pending_for_is_refused_with_its_name() {
        for bad in ["tomorrow", "PT0S", "P1M", "off"] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push(("PENDING_FOR", bad));
            let err = Config::from_lookup(env(&pairs)).unwrap_err();
            assert!(err.0.starts_with("PENDING_FOR"), "{bad}: {}", err.0);
        }
    }

    #[test]
    fn a_bad_max_duration_is_refused() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("MAX_DURATION", "forever"));
        assert!(Config::from_lookup(env(&pairs)).is_err());
    }
}
