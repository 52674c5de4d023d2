//! RFC 3339 timestamps without a date library: checking the shape of one (the routing
//! document's `updated_at`) and writing one (the controller's events and KV writes).

/// True when `s` is an RFC 3339 date-time such as `2026-11-26T10:00:00Z` or
/// `2026-11-26T10:00:00.123+01:00`. Checks the layout and field ranges, not leap seconds.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let num = |range: std::ops::Range<usize>, max: u32| -> bool {
        b[range.clone()].iter().all(u8::is_ascii_digit)
            && s[range].parse::<u32>().is_ok_and(|v| v <= max)
    };
    let layout = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !(layout
        && num(0..4, 9999)
        && num(5..7, 12)
        && s[5..7] != *"00"
        && num(8..10, 31)
        && s[8..10] != *"00"
        && num(11..13, 23)
        && num(14..16, 59)
        && num(17..19, 60))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
                && rest[1..3].parse::<u32>().is_ok_and(|h| h <= 23)
                && rest[4..6].parse::<u32>().is_ok_and(|m| m <= 59)
        }
        _ => false,
    }
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn format_rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_timestamps() {
        for s in [
            "2026-11-26T10:00:00Z",
            "2026-11-26t10:00:00z",
            "2026-11-26T10:00:00.5Z",
            "2026-11-26T10:00:00.123456+01:00",
            "2026-02-28T23:59:60-05:30",
        ] {
            assert!(is_rfc3339(s), "{s}");
        }
    }

    #[test]
    fn rejects_invalid_timestamps() {
        for s in [
            "",
            "yesterday",
            "2026-11-26",
            "2026-11-26T10:00:00",
            "2026-13-26T10:00:00Z",
            "2026-00-26T10:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T10:00:00.Z",
            "2026-11-26T10:00:00+1:00",
            "2026-11-26T10:00:00Zjunk",
            "2026/11/26T10:00:00Z",
        ] {
            assert!(!is_rfc3339(s), "{s}");
        }
    }

    #[test]
    fn formats_unix_milliseconds() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // 2000-03-01 is 11017 days after the epoch: 11017 * 86400 = 951868800.
        assert_eq!(
            format_rfc3339_ms(951_868_800_007),
            "2000-03-01T00:00:00.007Z"
        );
        // 2026-11-26T11:13:04Z = 1795691584 s.
        assert_eq!(
            format_rfc3339_ms(1_795_691_584_250),
            "2026-11-26T11:13:04.250Z"
        );
        assert!(is_rfc3339(&format_rfc3339_ms(1_795_691_584_250)));
    }
}
