//! Times as findings write them: RFC 3339, read back into [`SystemTime`].

use std::time::{Duration, SystemTime};

/// Parses an RFC 3339 time: `2026-11-22T10:00:00Z`, with optional fraction
/// (`…00.153Z`), a numeric offset (`…00+01:00`), a space for the `T`, or no zone
/// (taken as UTC). A bare date (`2026-11-22`) means its midnight, UTC.
///
/// Never panics, whatever the text.
///
/// ```
/// use std::time::Duration;
/// use taskscope_api::time::parse_time;
///
/// let utc = parse_time("2026-11-22T10:00:00.153Z").unwrap();
/// assert_eq!(parse_time("2026-11-22T11:00:00.153+01:00"), Ok(utc));
/// let midnight = parse_time("2026-11-22").unwrap();
/// assert_eq!(utc.duration_since(midnight).unwrap(), Duration::from_millis(36_000_153));
/// assert!(parse_time("yesterday").is_err());
/// ```
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    const WHAT: &str = "not an RFC 3339 time such as 2026-11-22T10:00:00Z";
    if text.len() == "2026-11-22".len() {
        return humantime::parse_rfc3339_weak(&format!("{text}T00:00:00Z"))
            .map_err(|_| WHAT.into());
    }
    let bytes = text.as_bytes();
    // RFC 3339 allows lower-case `t` and `z`; humantime wants upper case.
    let mut text = text.to_owned();
    if bytes.get(10) == Some(&b't') {
        text.replace_range(10..11, "T");
    }
    if text.ends_with('z') {
        text.pop();
        text.push('Z');
    }
    // A numeric offset: parse the local time, then move it to UTC.
    let (local, offset) = match split_offset(&text) {
        Some((local, offset)) => (local, offset),
        None => (text.strip_suffix('Z').unwrap_or(&text), 0),
    };
    // humantime lets some junk through after the seconds: only `.digits` may follow.
    let fraction = local.get(19..).ok_or(WHAT)?;
    if let Some(digits) = fraction.strip_prefix('.') {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(WHAT.into());
        }
    } else if !fraction.is_empty() {
        return Err(WHAT.into());
    }
    let time = humantime::parse_rfc3339_weak(local).map_err(|_| WHAT.to_string())?;
    let moved = if offset >= 0 {
        time.checked_sub(Duration::from_secs(offset.unsigned_abs()))
    } else {
        time.checked_add(Duration::from_secs(offset.unsigned_abs()))
    };
    moved.ok_or_else(|| WHAT.to_string())
}

/// Splits `…+HH:MM` / `…-HH:MM` into the local time and the offset in seconds
/// east of UTC. `None` when there is no such suffix after the seconds.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    let n = text.len();
    if n < 19 + 6 {
        return None;
    }
    let (local, zone) = (text.get(..n - 6)?, text.get(n - 6..)?);
    let zone = zone.as_bytes();
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if zone[3] != b':' || !zone[1..3].iter().chain(&zone[4..]).all(u8::is_ascii_digit) {
        return None;
    }
    let hours = i64::from(zone[1] - b'0') * 10 + i64::from(zone[2] - b'0');
    let minutes = i64::from(zone[4] - b'0') * 10 + i64::from(zone[5] - b'0');
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((local, sign * (hours * 3600 + minutes * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        parse_time(text).unwrap()
    }

    #[test]
    fn parses_the_forms_of_rfc_3339() {
        let utc = at("2026-11-22T10:00:00Z");
        assert_eq!(at("2026-11-22T10:00:00.000Z"), utc);
        assert_eq!(at("2026-11-22 10:00:00"), utc);
        assert_eq!(at("2026-11-22t10:00:00z"), utc);
        assert_eq!(at("2026-11-22T11:30:00+01:30"), utc);
        assert_eq!(at("2026-11-22T09:00:00-01:00"), utc);
        assert_eq!(at("2026-11-22T10:00:00+00:00"), utc);
        assert_eq!(at("2026-11-22"), at("2026-11-22T00:00:00Z"));
        assert_eq!(
            at("2026-11-22T10:00:00.153Z").duration_since(utc).unwrap(),
            Duration::from_millis(153)
        );
    }

    #[test]
    fn rejects_what_is_not_a_time_without_panicking() {
        for bad in [
            "",
            "x",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-22T10:00",
            "2026-11-22T10:00:00+1:00",
            "2026-11-22T10:00:00+25:00",
            "2026-11-22T10:00:00Zjunk",
            "ééééééééééééééééééééééééé",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00.1x",
            "2026-11-22T10:00:00Z+01:00",
            "2026-11-22T10:00:00ZZ",
            "2026-11-22Té0:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
