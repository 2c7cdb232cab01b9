//! Number parsing and printing with Redis's exact rules. Written by hand because the accepted
//! spellings (`string2ll`, `strtod` without spaces) and the printed forms (`%.17g`, the
//! human-friendly `%.17Lf` of INCRBYFLOAT) are part of the protocol clients see.

/// Redis's `string2ll`: optional `-`, no `+`, no spaces, no leading zeros, no overflow.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut value: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if negative {
        if value > i64::MAX as u64 + 1 {
            None
        } else {
            Some((value as i64).wrapping_neg())
        }
    } else {
        i64::try_from(value).ok()
    }
}

/// Redis's `string2d`/`strtod` acceptance: the whole string must be a number, no surrounding
/// spaces, and NaN is rejected. `inf`, `-inf` and exponents are accepted.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    // Scores and increments are mostly small integers: exact as doubles, no text parse.
    if s.len() <= 15
        && let Some(value) = parse_i64(s)
    {
        return Some(value as f64);
    }
    if s.is_empty() || s[0].is_ascii_whitespace() || s[s.len() - 1].is_ascii_whitespace() {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let starts_with = |s: &str, prefix: &str| {
        s.len() >= prefix.len()
            && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    let body = text.trim_start_matches(['+', '-']);
    if starts_with(body, "nan") || starts_with(body, "0x") || text.starts_with("+-") {
        return None;
    }
    let value: f64 = if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }
    } else {
        text.parse().ok()?
    };
    (!value.is_nan()).then_some(value)
}

/// C's `%.17g`, the form Redis 7.0 uses for doubles in replies (scores, RESP3 doubles).
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    const PRECISION: i32 = 17;
    // %.17g prints an integral value below 10^17 as that integer; scores usually are one.
    if value.fract() == 0.0 && value.abs() < 1e17 {
        return itoa::Buffer::new().format(value as i64).to_owned();
    }
    // %.17g takes the 17 significant digits and the exponent of %.16e, then writes them in
    // fixed or exponent form; the digits are produced once.
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, value.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("exponent form");
    let exponent: i32 = exponent.parse().expect("exponent digits");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = digits.trim_end_matches('0');
    let mut out = String::with_capacity(32);
    if value < 0.0 {
        out.push('-');
    }
    if !(-4..PRECISION).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(if exponent < 0 { "e-" } else { "e+" });
        if exponent.abs() < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(exponent.abs()));
    } else if exponent < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
        out.push_str(digits);
    } else {
        let whole = exponent as usize + 1;
        out.push_str(&digits[..whole.min(digits.len())]);
        out.extend(std::iter::repeat_n('0', whole.saturating_sub(digits.len())));
        if digits.len() > whole {
            out.push('.');
            out.push_str(&digits[whole..]);
        }
    }
    out
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// The human-friendly form INCRBYFLOAT and HINCRBYFLOAT store (Redis's `%.17Lf` with trailing
/// zeros removed): no exponent, at most 17 decimals, and never `-0`. Redis computes in long
/// double; the shortest round-trip form of our double gives the same text for the decimal
/// inputs people use (10.5 + 0.1 is "10.6"), and longer fractions are rounded to 17 places.
pub fn format_human_double(value: f64) -> String {
    let shortest = value.to_string();
    let text = match shortest.split_once('.') {
        Some((_, frac)) if frac.len() > 17 => trim_fraction(&format!("{value:.17}")).to_owned(),
        _ => shortest,
    };
    if text == "-0" { "0".into() } else { text }
}

/// A double as Redis's `addReplyHumanLongDouble` prints it: its exact value to 17 decimals
/// (`%.17Lf`), trailing zeros removed (GEOPOS coordinates).
pub fn format_long_double_human(value: f64) -> String {
    trim_fraction(&format!("{value:.17}")).to_owned()
}

/// `value` rounded to 4 decimals, ties to even, always with 4 digits after the point (Redis's
/// `fixedpoint_d2string`, which geo distances go through).
pub fn format_fixed4(value: f64) -> String {
    let scaled = (value * 10_000.0).round_ties_even() as i64;
    let sign = if scaled < 0 { "-" } else { "" };
    let abs = scaled.unsigned_abs();
    format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_integers_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b"9223372036854775808"[..],
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"",
            b"-",
            b"-0",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn parses_doubles_like_strtod() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"-INFinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"42"), Some(42.0));
        assert_eq!(parse_f64(b"007"), Some(7.0));
        assert_eq!(parse_f64(b"-9007199254740993"), Some(-9007199254740992.0));
        let negative_zero = parse_f64(b"-0").unwrap();
        assert!(negative_zero == 0.0 && negative_zero.is_sign_negative());
        for bad in [
            &b" 1"[..],
            b"1 ",
            b"nan",
            b"-NaN",
            b"0x10",
            b"+-1",
            b"abc",
            b"",
            b"1\x002",
        ] {
            assert_eq!(parse_f64(bad), None);
        }
    }

    #[test]
    fn formats_like_percent_17g() {
        assert_eq!(format_double(1.0), "1");
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(1.1), "1.1000000000000001");
        assert_eq!(format_double(-0.0001), "-0.0001");
        assert_eq!(format_double(0.00001), "1.0000000000000001e-05");
        assert_eq!(format_double(1e17), "1e+17");
        assert_eq!(format_double(12345678901234567.0), "12345678901234568");
        assert_eq!(format_double(f64::INFINITY), "inf");
        // Expected texts from C's printf("%.17g") (through Python's % operator).
        for (value, printf) in [
            (0.1, "0.10000000000000001"),
            (-0.1, "-0.10000000000000001"),
            (123.456, "123.456"),
            (0.00015, "0.00014999999999999999"),
            (-2.5e-300, "-2.5e-300"),
            (1e300, "1.0000000000000001e+300"),
            (std::f64::consts::PI, "3.1415926535897931"),
            (1.0000000000000002e16, "10000000000000002"),
            (9.999999999999998e16, "99999999999999984"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "4.9406564584124654e-324"),
            (-1234567.125, "-1234567.125"),
            (0.0001, "0.0001"),
            (123456789.98765431, "123456789.98765431"),
            (1e22, "1e+22"),
            (6.02214076e23, "6.0221407599999999e+23"),
        ] {
            assert_eq!(format_double(value), printf, "{value:e}");
        }
    }

    #[test]
    fn formats_human_doubles() {
        assert_eq!(format_human_double(10.5 + 0.1), "10.6");
        assert_eq!(format_human_double(17179869185.5), "17179869185.5");
        assert_eq!(format_human_double(34359738368.0), "34359738368");
        assert_eq!(format_human_double(-0.0), "0");
        assert_eq!(format_human_double(5e-20), "0");
        assert_eq!(format_human_double(-4.4e-18), "0");
        assert_eq!(format_human_double(1.0 / 41.0), "0.02439024390243903");
    }
}
