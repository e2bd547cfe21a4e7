//! What every ticket system's settings share: reading a kind's fields from a connection body or from the stored
//! settings, the checks (a credential is printable and not the mask, an e-mail looks like one, a user name fits
//! Basic auth, a field another kind takes is refused rather than ignored), and the sign-in methods several
//! kinds use.

use crate::domain::connection::{AuthMethod, ConnectionKind, ConnectionSettings, KindFields};
use crate::domain::identity::looks_like_email;
use crate::domain::secret::Secret;
use crate::ports::{SettingsError, TicketSystemKind};

/// Sign-in methods several kinds share; each is also the name of its credential's field.
impl AuthMethod {
    /// An API token with an account's e-mail (Jira Cloud).
    pub const API_TOKEN: Self = Self::named("api_token");
    /// A personal access token sent as a bearer token (Jira Data Center).
    pub const PERSONAL_ACCESS_TOKEN: Self = Self::named("personal_access_token");
    /// A user name and password (Jira Data Center, ServiceNow).
    pub const PASSWORD: Self = Self::named("password");
    /// An API key (Freshservice).
    pub const API_KEY: Self = Self::named("api_key");
}

/// The names the code and tests used when methods were an enum.
#[allow(non_upper_case_globals)]
impl AuthMethod {
    pub const ApiToken: Self = Self::API_TOKEN;
    pub const PersonalAccessToken: Self = Self::PERSONAL_ACCESS_TOKEN;
    pub const Password: Self = Self::PASSWORD;
    pub const ApiKey: Self = Self::API_KEY;
}

/// A text field of a body: `None` when absent or `null` (the HTTP layer let through strings and `null` only).
pub(crate) fn text(given: &KindFields, field: &str) -> Option<String> {
    given
        .get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// A secret field of a body: `None` when absent or `null`.
pub(crate) fn secret(given: &KindFields, field: &str) -> Option<Secret> {
    text(given, field).map(Secret::new)
}

/// A text setting as stored in the connection's kind fields.
pub(crate) fn stored(settings: &ConnectionSettings, field: &str) -> Option<String> {
    settings
        .fields
        .get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// Kind fields from `(name, value)` pairs, leaving out the absent ones.
pub(crate) fn fields_of<const N: usize>(pairs: [(&str, Option<String>); N]) -> KindFields {
    pairs
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_owned(), serde_json::Value::String(v))))
        .collect()
}

/// The longest credential accepted.
const MAX_SECRET: usize = 8 * 1024;

/// A credential given in full: 1 to 8 KiB of printable characters, and not the mask.
pub(crate) fn check_credential(field: &str, secret: &Secret) -> Result<(), SettingsError> {
    let value = secret.expose();
    if value.trim().is_empty() || value.len() > MAX_SECRET || value.chars().any(char::is_control) {
        return Err(SettingsError::new(
            "invalid_credentials",
            format!("`{field}` must be 1 to {MAX_SECRET} printable characters"),
        ));
    }
    if secret.is_mask() {
        return Err(SettingsError::new(
            "invalid_credentials",
            format!("`{field}` is the mask; give the real value"),
        ));
    }
    Ok(())
}

/// A required credential of a new connection.
pub(crate) fn required(
    kind: ConnectionKind,
    field: &str,
    value: &Option<Secret>,
) -> Result<Secret, SettingsError> {
    let secret = value.clone().ok_or_else(|| {
        SettingsError::new(
            "missing_credentials",
            format!("`{field}` is required for a {} connection", kind.as_str()),
        )
    })?;
    check_credential(field, &secret)?;
    Ok(secret)
}

/// A changed credential: `None` when absent or sent back masked ("keep").
pub(crate) fn given(value: &Option<Secret>) -> Option<Secret> {
    value.clone().filter(|s| !s.is_mask())
}

pub(crate) fn check_email(email: &str) -> Result<String, SettingsError> {
    let email = email.trim();
    if !looks_like_email(email) {
        return Err(SettingsError::new(
            "invalid_email",
            "`email` must be the e-mail address of the account the API token belongs to",
        ));
    }
    Ok(email.to_owned())
}

pub(crate) fn check_username(username: &str) -> Result<String, SettingsError> {
    let username = username.trim();
    if username.is_empty() || username.len() > 255 || username.contains(':') {
        return Err(SettingsError::new(
            "invalid_username",
            "`username` must be 1 to 255 characters, without `:`",
        ));
    }
    Ok(username.to_owned())
}

/// The 422 for a field that another kind of connection takes.
pub(crate) fn not_applicable(field: &str, kind: ConnectionKind) -> SettingsError {
    SettingsError::new(
        "field_not_applicable",
        format!("`{field}` does not apply to a {} connection", kind.as_str()),
    )
}

/// Refuses any field of the body that `system` does not take (another kind's).
pub(crate) fn reject_foreign_fields(
    system: &dyn TicketSystemKind,
    input: &KindFields,
) -> Result<(), SettingsError> {
    match input
        .keys()
        .find(|field| !system.credential_fields().contains(&field.as_str()))
    {
        Some(field) => Err(not_applicable(field, system.kind())),
        None => Ok(()),
    }
}

/// The keep-what-you-have answer of a change that gives no new credential.
pub(crate) fn keep_current(
    settings: &ConnectionSettings,
    current: Option<&crate::domain::connection::Credentials>,
) -> Result<crate::domain::connection::Credentials, SettingsError> {
    current.cloned().ok_or_else(|| {
        SettingsError::new(
            "missing_credentials",
            format!(
                "connection `{}` has no stored credentials; give them in full",
                settings.id
            ),
        )
    })
}

/// The error of closed statuses that do not fit the kind.
pub(crate) fn invalid_closed_statuses(message: impl Into<String>) -> SettingsError {
    SettingsError::new("invalid_closed_statuses", message)
}
