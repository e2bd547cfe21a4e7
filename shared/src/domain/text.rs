//! Text that people read and decide on: a grant's reason, a resource's name and description. An approver reads
//! them in the portal, in notifications and in audit tickets, so they must say what they seem to say. Control
//! characters and invisible formatting characters (bidirectional overrides and isolates, direction marks,
//! zero-width spaces, ...) can reorder or hide what is shown: `evil.com` written as U+202E then `moc.live`
//! reads as the former though it is stored as the latter. Such text is refused rather than cleaned, so what was stored is what the person typed.

/// The error code of refused text, beside the field it names.
pub const CODE: &str = "invalid_text";

/// Whether a field may span lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    /// One line: a name.
    Single,
    /// Free text: line feeds and tabs are kept (a reason or a description may have paragraphs).
    Multi,
}

/// Text refused for a character that could change what a reader sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{field}` holds the invisible or control character U+{code:04X}, which can change how the text reads; remove it",
    code = u32::from(*.character)
)]
pub struct UnsafeText {
    /// The field, as the API names it.
    pub field: &'static str,
    /// The first character refused.
    pub character: char,
}

/// Refuses `text` when it holds a control character (Unicode category Cc; line feed and tab allowed in
/// [`Lines::Multi`]), a format character (category Cf: bidirectional embeddings, overrides and isolates,
/// direction marks, zero-width spaces, the byte-order mark, ...) or a line or paragraph separator. The zero-width
/// joiner and non-joiner stay allowed: scripts such as Persian and Devanagari and emoji sequences need them, and
/// they do not reorder text.
pub fn check(field: &'static str, text: &str, lines: Lines) -> Result<(), UnsafeText> {
    match text.chars().find(|&c| refused(c, lines)) {
        Some(character) => Err(UnsafeText { field, character }),
        None => Ok(()),
    }
}

fn refused(c: char, lines: Lines) -> bool {
    if lines == Lines::Multi && matches!(c, '\n' | '\t') {
        return false;
    }
    c.is_control() || is_format(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Unicode's format characters (general category Cf), less the joiners.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidirectional_overrides_isolates_and_marks_are_refused() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            let text = format!("fix{c}ing prod");
            assert_eq!(
                check("reason", &text, Lines::Multi),
                Err(UnsafeText {
                    field: "reason",
                    character: c
                }),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn control_characters_are_refused_but_line_feeds_and_tabs_only_in_free_text() {
        for c in [
            '\0', '\r', '\u{1B}', '\u{7F}', '\u{85}', '\u{2028}', '\u{2029}',
        ] {
            assert!(check("reason", &format!("a{c}b"), Lines::Multi).is_err());
        }
        assert!(check("reason", "line one\nline two\tindented", Lines::Multi).is_ok());
        assert!(check("name", "Prod\ndb", Lines::Single).is_err());
        assert!(check("name", "Prod\tdb", Lines::Single).is_err());
    }

    #[test]
    fn invisible_spaces_and_the_byte_order_mark_are_refused() {
        for c in ['\u{200B}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{E0041}'] {
            assert!(check("name", &format!("prod{c}db"), Lines::Single).is_err());
        }
    }

    #[test]
    fn ordinary_text_in_any_script_is_kept() {
        for text in [
            "INC-7: debugging the replica lag",
            "Données de production — accès en lecture",
            "بيانات الإنتاج",
            "उत्पादन डेटाबेस",
            "می‌خواهم",    // the zero-width non-joiner Persian needs
            "👩‍💻 on call", // an emoji sequence joined by U+200D
            "日本語のデータベース",
        ] {
            assert_eq!(check("reason", text, Lines::Multi), Ok(()), "{text}");
            assert_eq!(check("name", text, Lines::Single), Ok(()), "{text}");
        }
    }

    #[test]
    fn the_message_names_the_field_and_the_character() {
        let e = check("description", "a\u{202E}b", Lines::Multi).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("`description`"), "{message}");
        assert!(message.contains("U+202E"), "{message}");
    }
}
