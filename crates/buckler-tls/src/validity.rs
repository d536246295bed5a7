//! The validity period of an X.509 certificate, read from its DER without a general ASN.1
//! parser: the path to `tbsCertificate.validity` is fixed by RFC 5280, so a bounds-checked walk
//! of five fields is all it takes (rustls and webpki parse the rest of the certificate).

use std::time::{SystemTime, UNIX_EPOCH};

/// When a certificate starts and stops being valid, in seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_VERSION: u8 = 0xa0;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;

/// Reads `tbsCertificate.validity` from a DER certificate.
///
/// Errors are short phrases for a message that already names the file. Never panics: every
/// length is checked against the bytes that are there.
pub(crate) fn parse_validity(cert_der: &[u8]) -> Result<Validity, &'static str> {
    let (certificate, _) = expect(cert_der, TAG_SEQUENCE, "not a DER SEQUENCE")?;
    let (tbs, _) = expect(certificate, TAG_SEQUENCE, "no tbsCertificate")?;
    let mut rest = tbs;
    if rest.first() == Some(&TAG_VERSION) {
        rest = expect(rest, TAG_VERSION, "bad version field")?.1;
    }
    rest = expect(rest, TAG_INTEGER, "bad serial number")?.1;
    rest = expect(rest, TAG_SEQUENCE, "bad signature algorithm")?.1;
    rest = expect(rest, TAG_SEQUENCE, "bad issuer name")?.1;
    let (validity, _) = expect(rest, TAG_SEQUENCE, "bad validity field")?;
    let (not_before, rest) = read_time(validity)?;
    let (not_after, _) = read_time(rest)?;
    Ok(Validity {
        not_before,
        not_after,
    })
}

/// One DER element with tag `tag`: its contents and what follows it.
fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), &'static str> {
    let (&found, rest) = input.split_first().ok_or(what)?;
    if found != tag {
        return Err(what);
    }
    let (&first, rest) = rest.split_first().ok_or(what)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many length bytes follow (at most 4 here: a
        // certificate over 4 GiB is not one).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(what);
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return Err(what);
    }
    Ok(rest.split_at(len))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as RFC 5280 §4.1.2.5
/// requires them in certificates: UTC, with seconds, without fractions.
fn read_time(input: &[u8]) -> Result<(i64, &[u8]), &'static str> {
    const BAD: &str = "bad validity time";
    let (&tag, _) = input.split_first().ok_or(BAD)?;
    let (text, rest) = expect(input, tag, BAD)?;
    let (year, rest_of_text) = match tag {
        TAG_UTC_TIME if text.len() == 13 => {
            let yy = digits(&text[..2]).ok_or(BAD)?;
            // RFC 5280: YY >= 50 is 19YY, otherwise 20YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        TAG_GENERALIZED_TIME if text.len() == 15 => (digits(&text[..4]).ok_or(BAD)?, &text[4..]),
        _ => return Err(BAD),
    };
    if rest_of_text.last() != Some(&b'Z') {
        return Err(BAD);
    }
    let field = |i: usize| digits(&rest_of_text[i..i + 2]).ok_or(BAD);
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(BAD);
    }
    let days = days_from_civil(year, month, day);
    Ok((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
}

fn digits(ascii: &[u8]) -> Option<i64> {
    ascii.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-12-07T21:24:20Z` for a Unix timestamp, for messages.
pub(crate) fn format_unix(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60
    )
}

/// Seconds since the Unix epoch; a clock before 1970 counts as negative.
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [-1, 0, 59, 11_016, 11_017, 20_000, 30_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(1_796_678_660), "2026-12-07T21:24:20Z");
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        let utc = read_time(b"\x17\x0d491231235959Z").map(|(t, _)| t);
        assert_eq!(utc.map(format_unix), Ok("2049-12-31T23:59:59Z".to_owned()));
        let utc_1900s = read_time(b"\x17\x0d500101000000Z").map(|(t, _)| t);
        assert_eq!(
            utc_1900s.map(format_unix),
            Ok("1950-01-01T00:00:00Z".to_owned())
        );
        let generalized = read_time(b"\x18\x0f20500101000000Z").map(|(t, _)| t);
        assert_eq!(
            generalized.map(format_unix),
            Ok("2050-01-01T00:00:00Z".to_owned())
        );
    }

    #[test]
    fn refuses_malformed_times_and_truncated_input() {
        for bad in [
            &b"\x17\x0d491231235959+"[..], // not UTC
            b"\x17\x0b4912312359Z",        // no seconds
            b"\x17\x0d491331235959Z",      // month 13
            b"\x18\x0d491231235959Z",      // generalized with a two-digit year
            b"\x17\x0d49123123595",        // shorter than its length says
            b"\x17\x0dAB1231235959Z",      // not digits
            b"",
        ] {
            assert!(read_time(bad).is_err(), "{bad:?}");
        }
        assert!(parse_validity(&[]).is_err());
        assert!(parse_validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse_validity(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(parse_validity(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_err());
    }

    #[test]
    fn unix_seconds_handles_both_sides_of_the_epoch() {
        use std::time::Duration;
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }
}
