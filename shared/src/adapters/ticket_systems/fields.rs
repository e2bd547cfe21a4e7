//! Checks every ticket system's settings share: a credential is printable and not the mask, an e-mail looks
//! like one, a user name fits Basic auth, and a field another kind takes is refused rather than ignored.

use crate::domain::connection::ConnectionKind;
use crate::domain::identity::looks_like_email;
use crate::domain::secret::Secret;
use crate::ports::{CredentialFields, SettingsError, TicketSystemKind};

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

/// Refuses any credential field `system` does not take.
pub(crate) fn reject_foreign_fields(
    system: &dyn TicketSystemKind,
    input: &CredentialFields,
) -> Result<(), SettingsError> {
    let present = [
        ("email", input.email.is_some()),
        ("api_token", input.api_token.is_some()),
        (
            "personal_access_token",
            input.personal_access_token.is_some(),
        ),
        ("username", input.username.is_some()),
        ("password", input.password.is_some()),
        ("api_key", input.api_key.is_some()),
    ];
    for (field, given) in present {
        if given && !system.credential_fields().contains(&field) {
            return Err(not_applicable(field, system.kind()));
        }
    }
    Ok(())
}

/// The keep-what-you-have answer of a change that gives no new credential.
pub(crate) fn keep_current(
    settings: &crate::domain::connection::ConnectionSettings,
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
