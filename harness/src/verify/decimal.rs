//! JSON numbers by value and by spelling, read from their text: serde_json
//! (without `arbitrary_precision`, the workspace's setting) turns `15.0` into
//! an `f64` and `15` into a `u64`, and rounds long decimals, so neither its
//! values nor their `to_string` can tell a lost decimal from a changed one.
//! FHIR R4 (datatypes, `decimal`): the precision of a decimal is significant,
//! so `15.0` and `15` are the same value, spelled with one and zero decimals.

use serde_json::{Number, Value};

/// A number's value in canonical form and the decimals its text spells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    /// Sign, significant digits and exponent: `15.0`, `15`, `1.5e1` -> `15e0`; zero is `0`.
    pub value: String,
    /// Digits after the point, exponent applied: `15.0` 1, `15` 0, `1.50e1` 1, `1e2` -2.
    pub scale: i64,
}

impl Decimal {
    /// Whether the text spells digits after the point.
    pub fn has_fraction(&self) -> bool {
        self.scale > 0
    }
}

/// Reads a JSON number's text (valid JSON grammar assumed).
pub fn parse(text: &str) -> Decimal {
    let p = parts(text);
    let value = if p.is_zero() {
        "0".to_string()
    } else {
        format!("{}{}{}e{}", if p.negative { "-" } else { "" }, p.head, p.tail, p.point)
    };
    Decimal { value, scale: p.scale }
}

/// A number's canonical value, borrowed from its text: significant digits
/// `head` then `tail` (no leading or trailing zeros), times ten to `point`.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    negative: bool,
    head: &'a str,
    tail: &'a str,
    point: i64,
    /// Digits after the point, exponent applied (see [`Decimal::scale`]).
    pub scale: i64,
}

impl Parts<'_> {
    fn is_zero(&self) -> bool {
        self.head.is_empty() && self.tail.is_empty()
    }

    /// Feeds the value (not the spelling) to `h`, without allocating: equal
    /// values hash alike however their digits split around the point.
    pub fn hash_value(&self, h: &mut impl std::hash::Hasher) {
        if self.is_zero() {
            return h.write_u8(0);
        }
        h.write_u8(if self.negative { 1 } else { 2 });
        h.write(self.head.as_bytes());
        h.write(self.tail.as_bytes());
        h.write_u8(b'e');
        h.write_i64(self.point);
    }
}

/// The [`Parts`] of a JSON number's text (valid JSON grammar assumed).
pub fn parts(text: &str) -> Parts<'_> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], exponent(&rest[i + 1..])),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = (frac.len() as i64).saturating_sub(exp);
    // Leading zeros: through the integer part into the fraction.
    let int_trimmed = int.trim_start_matches('0');
    let (head, tail) = if int_trimmed.is_empty() { ("", frac.trim_start_matches('0')) } else { (int_trimmed, frac) };
    // Trailing zeros: through the fraction into the integer part.
    let tail_trimmed = tail.trim_end_matches('0');
    let mut zeros = tail.len() - tail_trimmed.len();
    let (head, tail) = if tail_trimmed.is_empty() {
        let h = head.trim_end_matches('0');
        zeros += head.len() - h.len();
        (h, "")
    } else {
        (head, tail_trimmed)
    };
    let point = exp.saturating_sub(frac.len() as i64).saturating_add(zeros as i64);
    let negative = negative && !(head.is_empty() && tail.is_empty());
    Parts { negative, head, tail, point, scale }
}

/// An exponent's value, clamped far beyond any real one.
fn exponent(text: &str) -> i64 {
    const FAR: i64 = i64::MAX / 4;
    text.parse::<i64>().unwrap_or(if text.starts_with('-') { -FAR } else { FAR })
}

/// The number tokens of a JSON text, in document order.
pub fn tokens(json: &[u8]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => i = skip_string(json, i + 1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len() && matches!(json[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                // ASCII only, so always UTF-8.
                out.push(std::str::from_utf8(&json[start..i]).unwrap_or_default());
            }
            _ => i += 1,
        }
    }
    out
}

/// The index just past the string whose contents start at `i`.
fn skip_string(json: &[u8], mut i: usize) -> usize {
    while i < json.len() {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The text each number of a parsed value was written with.
pub struct Spellings<'a> {
    /// (address of the `Number` in the value, its text), sorted by address.
    by_node: Vec<(usize, &'a str)>,
}

impl<'a> Spellings<'a> {
    /// Pairs the numbers of `value` (parsed from `json`) with their texts.
    /// Empty when they cannot be paired safely (a duplicate key dropped a
    /// number): every number is then read from its parsed value.
    pub fn of(value: &Value, json: &'a [u8]) -> Spellings<'a> {
        let mut nodes = Vec::new();
        numbers_in_order(value, &mut nodes);
        let texts = tokens(json);
        let paired =
            nodes.len() == texts.len() && nodes.iter().zip(&texts).all(|(n, t)| t.parse::<f64>().ok() == n.as_f64());
        if !paired {
            return Spellings { by_node: Vec::new() };
        }
        let mut by_node: Vec<(usize, &str)> =
            nodes.into_iter().map(|n| n as *const Number as usize).zip(texts).collect();
        by_node.sort_unstable_by_key(|(addr, _)| *addr);
        Spellings { by_node }
    }

    /// The decimal `n` (a number of the value given to [`Spellings::of`]) was written as.
    pub fn decimal(&self, n: &Number) -> Decimal {
        parse(&self.text(n))
    }

    /// Its value's [`Parts`] and scale, handed to `f` (no allocation when the spelling is known).
    pub fn with_parts<R>(&self, n: &Number, f: impl FnOnce(Parts<'_>) -> R) -> R {
        f(parts(&self.text(n)))
    }

    /// The text `n` was written with (serde_json's rendering when unknown).
    pub fn text(&self, n: &Number) -> std::borrow::Cow<'a, str> {
        let addr = n as *const Number as usize;
        match self.by_node.binary_search_by_key(&addr, |(a, _)| *a) {
            Ok(i) => std::borrow::Cow::Borrowed(self.by_node[i].1),
            Err(_) => std::borrow::Cow::Owned(n.to_string()),
        }
    }
}

/// The numbers of `v` in document order (objects keep it: `preserve_order`).
fn numbers_in_order<'v>(v: &'v Value, out: &mut Vec<&'v Number>) {
    match v {
        Value::Number(n) => out.push(n),
        Value::Array(a) => a.iter().for_each(|x| numbers_in_order(x, out)),
        Value::Object(o) => o.values().for_each(|x| numbers_in_order(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_ignore_spelling_and_scales_count_decimals() {
        let d = |t: &str| parse(t);
        assert_eq!(d("15.0").value, d("15").value);
        assert_eq!(d("1.5e1").value, d("15").value);
        assert_eq!(d("150E-1").value, d("15").value);
        assert_eq!(d("5.50").value, d("5.5").value);
        assert_eq!(d("-0.0").value, d("0").value);
        assert_ne!(d("15.1").value, d("15").value);
        assert_ne!(d("-15").value, d("15").value);
        assert_eq!(
            (d("15.0").scale, d("15").scale, d("5.50").scale, d("1.50e1").scale, d("1e2").scale),
            (1, 0, 2, 1, -2)
        );
        // Beyond f64 and u64: compared exactly, digit by digit.
        assert_ne!(d("9007199254740993").value, d("9007199254740992").value);
        assert_ne!(d("0.10000000000000000001").value, d("0.1").value);
        assert!(d("15.0").has_fraction() && !d("15").has_fraction());
        for (text, value) in [("0.0150", "15e-3"), ("10.00", "1e1"), ("100.5", "1005e-1"), ("150", "15e1"), ("-0", "0")]
        {
            assert_eq!(d(text).value, value, "{text}");
        }
    }

    #[test]
    fn tokens_skip_strings_and_pair_with_parsed_numbers() {
        let json = br#"{"a":"x-1 \"2\"","b":[1.50,-2e3],"c":{"d":0}}"#;
        assert_eq!(tokens(json), vec!["1.50", "-2e3", "0"]);
        let v: Value = serde_json::from_slice(json).unwrap();
        let s = Spellings::of(&v, json);
        assert_eq!(s.text(v["b"][0].as_number().unwrap()), "1.50");
        assert_eq!(s.decimal(v["c"]["d"].as_number().unwrap()).value, "0");
        // Strings beyond ASCII, with digits and escaped quotes inside: skipped whole.
        let json = r#"{"note":"💊 1,5 mg — \"2\" 王","v":15.0,"名":[3,"é4"]}"#.as_bytes();
        assert_eq!(tokens(json), vec!["15.0", "3"]);
        let v: Value = serde_json::from_slice(json).unwrap();
        assert_eq!(Spellings::of(&v, json).text(v["v"].as_number().unwrap()), "15.0");
        // A duplicate key drops a number: no pairing, the parsed values speak.
        let dup = br#"{"a":1.50,"a":2.50}"#;
        let v: Value = serde_json::from_slice(dup).unwrap();
        assert_eq!(Spellings::of(&v, dup).text(v["a"].as_number().unwrap()), "2.5");
    }
}
