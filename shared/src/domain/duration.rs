//! Grant durations: ISO-8601 durations (`PT30M`, `PT4H`, `P2D`, `P1W`) or the literal `"indefinite"`.
//!
//! Calendar units (years `Y` and months `M` before `T`) are refused: their length depends on the calendar, and an
//! access bound must mean the same number of seconds to everybody. Fractions are refused too. Every other
//! combination of weeks, days, hours, minutes and seconds is accepted and kept exactly as written.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A positive ISO-8601 duration made of weeks, days, hours, minutes and seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoDuration {
    text: String,
    seconds: i64,
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not an ISO-8601 duration such as PT30M, PT4H or P2D")]
    Malformed(String),
    #[error(
        "`{0}` uses years or months, whose length depends on the calendar; use days or weeks (e.g. P30D)"
    )]
    CalendarUnit(String),
    #[error("`{0}` is zero; a duration must be positive")]
    Zero(String),
    #[error("`{0}` is too long to represent")]
    Overflow(String),
}

impl IsoDuration {
    /// Parses `PnW`, `PnD`, `PTnHnMnS` and their combinations.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let malformed = || DurationError::Malformed(text.to_owned());
        let overflow = || DurationError::Overflow(text.to_owned());
        let rest = text.strip_prefix('P').ok_or_else(malformed)?;
        if rest.is_empty() {
            return Err(malformed());
        }
        let (date, time) = match rest.split_once('T') {
            Some((_, "")) => return Err(malformed()),
            Some((d, t)) => (d, Some(t)),
            None => (rest, None),
        };
        let mut seconds: i64 = 0;
        let mut add =
            |part: &str, units: &[(char, i64)], calendar: &[char]| -> Result<(), DurationError> {
                let mut number = String::new();
                let mut last_unit = None::<usize>;
                for c in part.chars() {
                    if c.is_ascii_digit() {
                        number.push(c);
                        continue;
                    }
                    if calendar.contains(&c) {
                        return Err(DurationError::CalendarUnit(text.to_owned()));
                    }
                    let index = units
                        .iter()
                        .position(|(u, _)| *u == c)
                        .ok_or_else(malformed)?;
                    // Units must appear once each, in order (PT1H30M, not PT30M1H).
                    if number.is_empty() || last_unit.is_some_and(|l| l >= index) {
                        return Err(malformed());
                    }
                    last_unit = Some(index);
                    let n: i64 = number.parse().map_err(|_| overflow())?;
                    let add = n.checked_mul(units[index].1).ok_or_else(overflow)?;
                    seconds = seconds.checked_add(add).ok_or_else(overflow)?;
                    number.clear();
                }
                if !number.is_empty() {
                    return Err(malformed());
                }
                Ok(())
            };
        add(date, &[('W', 604_800), ('D', 86_400)], &['Y', 'M'])?;
        if let Some(time) = time {
            add(time, &[('H', 3_600), ('M', 60), ('S', 1)], &[])?;
        }
        if seconds == 0 {
            return Err(DurationError::Zero(text.to_owned()));
        }
        // At most 100 years: far from the limits of date arithmetic, and longer than any real bound.
        if seconds > 3_153_600_000 {
            return Err(overflow());
        }
        Ok(Self {
            text: text.to_owned(),
            seconds,
        })
    }

    /// The duration in whole seconds.
    pub fn seconds(&self) -> i64 {
        self.seconds
    }

    /// As a `time::Duration`.
    pub fn as_duration(&self) -> time::Duration {
        time::Duration::seconds(self.seconds)
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How long a grant lasts once approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantDuration {
    Bounded(IsoDuration),
    /// Until the bound ticket closes (only allowed with a ticket).
    Indefinite,
}

impl GrantDuration {
    pub const INDEFINITE: &'static str = "indefinite";

    pub fn parse(text: &str) -> Result<Self, DurationError> {
        if text == Self::INDEFINITE {
            Ok(Self::Indefinite)
        } else {
            IsoDuration::parse(text).map(Self::Bounded)
        }
    }

    pub fn bound(&self) -> Option<&IsoDuration> {
        match self {
            Self::Bounded(d) => Some(d),
            Self::Indefinite => None,
        }
    }
}

impl fmt::Display for GrantDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bounded(d) => d.fmt(f),
            Self::Indefinite => f.write_str(Self::INDEFINITE),
        }
    }
}

impl Serialize for GrantDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GrantDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_durations_parse_to_seconds() {
        for (text, secs) in [
            ("PT30M", 1_800),
            ("PT4H", 14_400),
            ("P2D", 172_800),
            ("P1W", 604_800),
            ("P1DT2H", 93_600),
            ("PT1H30M15S", 5_415),
            ("PT90M", 5_400),
            ("PT3S", 3),
        ] {
            assert_eq!(IsoDuration::parse(text).unwrap().seconds(), secs, "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for text in [
            "", "P", "PT", "4H", "PT4", "PTH", "PT-4H", "P1.5D", "PT30M1H", "PT1H1H", "p1d",
            "P1DT", " PT1H", "PT1H ",
        ] {
            assert!(
                matches!(IsoDuration::parse(text), Err(DurationError::Malformed(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn zero_duration_is_rejected() {
        assert!(matches!(
            IsoDuration::parse("PT0S"),
            Err(DurationError::Zero(_))
        ));
        assert!(matches!(
            IsoDuration::parse("P0D"),
            Err(DurationError::Zero(_))
        ));
    }

    #[test]
    fn calendar_units_are_rejected() {
        assert!(matches!(
            IsoDuration::parse("P1M"),
            Err(DurationError::CalendarUnit(_))
        ));
        assert!(matches!(
            IsoDuration::parse("P1Y"),
            Err(DurationError::CalendarUnit(_))
        ));
        // M after T is minutes, which is fine.
        assert_eq!(IsoDuration::parse("PT1M").unwrap().seconds(), 60);
    }

    #[test]
    fn absurd_durations_overflow_instead_of_panicking() {
        assert!(matches!(
            IsoDuration::parse("P99999999999999999999D"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            IsoDuration::parse("P9999999999999D"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn indefinite_is_its_own_variant_and_round_trips() {
        let d: GrantDuration = serde_json::from_str("\"indefinite\"").unwrap();
        assert_eq!(d, GrantDuration::Indefinite);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"indefinite\"");
        let d: GrantDuration = serde_json::from_str("\"PT4H\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"PT4H\"");
    }
}
