//! "now" on the command line and in case files: Unix seconds or RFC 3339.

use anyhow::{bail, Context as _, Result};

/// Parses `1767225600`, `2026-01-01T00:00:00Z`, `2026-01-01T01:00:00+01:00` or
/// `2026-01-01` (midnight UTC) into Unix seconds.
pub fn parse_time(text: &str) -> Result<i64> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(secs);
    }
    parse_rfc3339(t).with_context(|| {
        format!("{t:?} is neither Unix seconds nor an RFC 3339 time like 2026-01-01T00:00:00Z")
    })
}

fn parse_rfc3339(t: &str) -> Result<i64> {
    let b = t.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64> {
        let s = t.get(range).context("too short")?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            bail!("{s:?} is not a number");
        }
        Ok(s.parse()?)
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        bail!("expected YYYY-MM-DD");
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        bail!("no such date");
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if b.len() == 10 {
        return Ok(secs);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        bail!("expected THH:MM:SS after the date");
    }
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hh > 23 || mm > 59 || ss > 60 {
        bail!("no such time of day");
    }
    secs += hh * 3600 + mm * 60 + ss;
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            bail!("empty fraction of a second");
        }
        rest = &frac[digits..];
    }
    match rest {
        "Z" | "z" => Ok(secs),
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let oh: i64 = rest[1..3].parse().context("bad offset hours")?;
            let om: i64 = rest[4..6].parse().context("bad offset minutes")?;
            let offset = oh * 3600 + om * 60;
            Ok(if rest.starts_with('+') {
                secs - offset
            } else {
                secs + offset
            })
        }
        _ => bail!("expected a Z or ±HH:MM offset"),
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's civil-to-days conversion (days since 1970-01-01).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as RFC 3339 UTC (`2026-01-01T00:00:00Z`); the number itself before 1970.
pub fn format_time(secs: i64) -> String {
    match u64::try_from(secs) {
        Ok(s) => policy_engine::audit::rfc3339_millis(s.saturating_mul(1000)).replace(".000Z", "Z"),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_and_rfc3339() {
        assert_eq!(parse_time("1767225600").unwrap(), 1_767_225_600);
        assert_eq!(parse_time("2026-01-01T00:00:00Z").unwrap(), 1_767_225_600);
        assert_eq!(parse_time("2026-01-01").unwrap(), 1_767_225_600);
        assert_eq!(
            parse_time("2026-01-01T01:00:00+01:00").unwrap(),
            1_767_225_600
        );
        assert_eq!(
            parse_time("2025-12-31T19:00:00.250-05:00").unwrap(),
            1_767_225_600
        );
        assert_eq!(parse_time("2024-02-29T23:59:59Z").unwrap(), 1_709_251_199);
        for bad in [
            "",
            "tomorrow",
            "2026-02-30",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:00:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_time(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(format_time(-5), "-5");
    }
}
