//! `%START_TIME%` values to Unix seconds, and back for output.
//!
//! Accepted: RFC 3339 as Envoy writes it by default (`2020-11-25T21:26:18.409Z`, also with a
//! space instead of `T` or a `+hh:mm` offset), and Unix epoch numbers (`%START_TIME(%s)%`;
//! milliseconds or microseconds are told apart by size).

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Checked: a field of many digits must not overflow (found by the fuzz target).
    b.iter().try_fold(0i64, |a, &c| {
        a.checked_mul(10)?.checked_add(i64::from(c - b'0'))
    })
}

/// Unix seconds of a start time; `None` when it is not a form meshmedic knows.
pub fn parse_secs(v: &[u8]) -> Option<i64> {
    if v.len() >= 19 && v[4] == b'-' && v[7] == b'-' && (v[10] == b'T' || v[10] == b' ') {
        let (y, mo, d) = (num(&v[0..4])?, num(&v[5..7])?, num(&v[8..10])?);
        let (h, mi, s) = (num(&v[11..13])?, num(&v[14..16])?, num(&v[17..19])?);
        if v[13] != b':'
            || v[16] != b':'
            || !(1..=12).contains(&mo)
            || !(1..=31).contains(&d)
            || h > 23
            || mi > 59
            || s > 60
        {
            return None;
        }
        let mut t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
        // Skip fractional seconds, then apply an offset if there is one.
        let mut i = 19;
        if v.get(i) == Some(&b'.') {
            i += 1;
            while v.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        match v.get(i) {
            None | Some(b'Z') | Some(b'z') => {}
            Some(&sign @ (b'+' | b'-')) if v.len() >= i + 6 && v[i + 3] == b':' => {
                let off = num(&v[i + 1..i + 3])? * 3600 + num(&v[i + 4..i + 6])? * 60;
                t += if sign == b'+' { -off } else { off };
            }
            _ => return None,
        }
        return Some(t);
    }
    let int = v.split(|&c| c == b'.').next()?;
    let n = num(int)?;
    if int.len() > 18 {
        return None;
    }
    Some(match n {
        n if n >= 100_000_000_000_000 => n / 1_000_000,
        n if n >= 100_000_000_000 => n / 1000,
        n => n,
    })
}

/// RFC 3339 UTC text of Unix seconds.
pub fn format_secs(t: i64) -> String {
    let (days, s) = (t.div_euclid(86400), t.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_forms() {
        let t = parse_secs(b"2020-11-25T21:26:18.409Z").expect("rfc3339");
        assert_eq!(t, 1606339578);
        assert_eq!(format_secs(t), "2020-11-25T21:26:18Z");
        assert_eq!(parse_secs(b"2020-11-25T23:26:18+02:00"), Some(t));
        assert_eq!(parse_secs(b"1606339578"), Some(t));
        assert_eq!(parse_secs(b"1606339578409"), Some(t));
        assert_eq!(parse_secs(b"1606339578.5"), Some(t));
        assert_eq!(parse_secs(b"2020-13-25T21:26:18Z"), None);
        assert_eq!(parse_secs(b"yesterday"), None);
        assert_eq!(parse_secs(b""), None);
        assert_eq!(parse_secs(b"99999999999999999999999999"), None);
        assert_eq!(format_secs(0), "1970-01-01T00:00:00Z");
    }
}
