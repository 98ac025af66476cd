//! Calendar arithmetic and FHIR date/instant formatting without allocation.
//!
//! The generator formats millions of dates per second, so this avoids the
//! general-purpose formatters. Parsing of client-supplied instants uses the
//! `time` crate (see `export::params`).

use super::json::push_padded;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Writes a FHIR `date` (`YYYY-MM-DD`) for Unix seconds `secs`.
pub fn write_date(out: &mut Vec<u8>, secs: i64) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    push_padded(out, y.clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_padded(out, m as u64, 2);
    out.push(b'-');
    push_padded(out, d as u64, 2);
}

/// Writes a FHIR `instant` in UTC (`YYYY-MM-DDThh:mm:ssZ`) for Unix seconds `secs`.
pub fn write_instant(out: &mut Vec<u8>, secs: i64) {
    write_date(out, secs);
    let s = secs.rem_euclid(86_400) as u64;
    out.push(b'T');
    push_padded(out, s / 3600, 2);
    out.push(b':');
    push_padded(out, s / 60 % 60, 2);
    out.push(b':');
    push_padded(out, s % 60, 2);
    out.push(b'Z');
}

/// A FHIR instant string for Unix seconds.
pub fn instant_string(secs: i64) -> String {
    let mut out = Vec::with_capacity(20);
    write_instant(&mut out, secs);
    String::from_utf8(out).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_days() {
        for days in [-800_000, -1, 0, 1, 59, 365, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(instant_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(instant_string(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(instant_string(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
