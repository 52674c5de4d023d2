//! RFC 3339 timestamps without a date library: checking the shape of one (the routing
//! document's `updated_at`).

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
}
