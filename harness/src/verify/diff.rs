//! Where two resource lines differ, element by element: computed only for a
//! line whose digest did not match, to name the path and both spellings.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decimal::Spellings;

/// How one element differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The same number, spelled with fewer decimals (`15.0` as `15`): precision lost.
    FewerDecimals,
    /// The same number, spelled with more decimals (`15` as `15.0`).
    MoreDecimals,
    /// Anything else: another value, a member added or gone.
    Other,
}

/// One element that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The element's path (`valueQuantity.value`, `component[1].code`).
    pub path: String,
    /// As exported (`(absent)` when the export has no such element).
    pub expected: String,
    /// As found.
    pub found: String,
    /// What kind of difference.
    pub change: Change,
}

/// Longest rendering of a value kept in a [`Difference`].
const SHOWN: usize = 60;

/// Up to `limit` differences between an exported line and a found one (none
/// when either is not JSON).
pub fn differences(expected: &[u8], found: &[u8], limit: usize) -> Vec<Difference> {
    let (Ok(a), Ok(b)) = (serde_json::from_slice::<Value>(expected), serde_json::from_slice::<Value>(found)) else {
        return Vec::new();
    };
    let walk = Walk { a: Spellings::of(&a, expected), b: Spellings::of(&b, found), limit };
    let mut out = Vec::new();
    walk.compare(&a, &b, String::new(), &mut out);
    out
}

struct Walk<'a> {
    a: Spellings<'a>,
    b: Spellings<'a>,
    limit: usize,
}

impl Walk<'_> {
    fn compare(&self, a: &Value, b: &Value, path: String, out: &mut Vec<Difference>) {
        if out.len() >= self.limit {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    match (x.get(k), y.get(k)) {
                        (Some(va), Some(vb)) => self.compare(va, vb, p, out),
                        (va, vb) => self.push(out, p, va, vb, Change::Other),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                for i in 0..x.len().max(y.len()) {
                    let p = format!("{path}[{i}]");
                    match (x.get(i), y.get(i)) {
                        (Some(va), Some(vb)) => self.compare(va, vb, p, out),
                        (va, vb) => self.push(out, p, va, vb, Change::Other),
                    }
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                let (dx, dy) = (self.a.decimal(x), self.b.decimal(y));
                let change = if dx.value != dy.value {
                    Change::Other
                } else if dy.scale < dx.scale {
                    Change::FewerDecimals
                } else if dy.scale > dx.scale {
                    Change::MoreDecimals
                } else {
                    return;
                };
                self.push(out, path, Some(a), Some(b), change);
            }
            _ if a == b => {}
            _ => self.push(out, path, Some(a), Some(b), Change::Other),
        }
    }

    fn push(&self, out: &mut Vec<Difference>, path: String, a: Option<&Value>, b: Option<&Value>, change: Change) {
        if out.len() < self.limit {
            out.push(Difference { path, expected: self.show(&self.a, a), found: self.show(&self.b, b), change });
        }
    }

    /// A value as written (numbers in their own spelling), cut to [`SHOWN`] characters.
    fn show(&self, spellings: &Spellings<'_>, v: Option<&Value>) -> String {
        let text = match v {
            None => return "(absent)".into(),
            Some(Value::Number(n)) => spellings.text(n).into_owned(),
            Some(v) => v.to_string(),
        };
        match text.char_indices().nth(SHOWN) {
            Some((i, _)) => format!("{}...", &text[..i]),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_path_and_both_spellings() {
        let a = br#"{"resourceType":"Observation","id":"o","valueQuantity":{"value":15.0,"unit":"kg"},"component":[{"v":5.50},{"v":2}]}"#;
        let b = br#"{"id":"o","resourceType":"Observation","valueQuantity":{"unit":"kg","value":15},"component":[{"v":5.5},{"v":2.0}]}"#;
        let d = differences(a, b, 10);
        let brief: Vec<(&str, &str, &str, Change)> =
            d.iter().map(|d| (d.path.as_str(), d.expected.as_str(), d.found.as_str(), d.change)).collect();
        assert_eq!(
            brief,
            vec![
                ("component[0].v", "5.50", "5.5", Change::FewerDecimals),
                ("component[1].v", "2", "2.0", Change::MoreDecimals),
                ("valueQuantity.value", "15.0", "15", Change::FewerDecimals),
            ]
        );
        let c = br#"{"id":"o","resourceType":"Observation","valueQuantity":{"value":16.0}}"#;
        let d = differences(a, c, 10);
        assert_eq!((d[0].path.as_str(), d[0].change), ("component", Change::Other));
        assert_eq!((d[1].path.as_str(), d[1].found.as_str()), ("valueQuantity.unit", "(absent)"));
        assert_eq!((d[2].expected.as_str(), d[2].found.as_str(), d[2].change), ("15.0", "16.0", Change::Other));
        assert_eq!(differences(a, c, 1).len(), 1);
    }

    #[test]
    fn values_beyond_ascii_are_cut_between_characters() {
        let long = "🩺é王".repeat(30);
        let a = format!(r#"{{"resourceType":"Condition","id":"c","note":[{{"text":"{long}"}}],"名前":"José"}}"#);
        let b = r#"{"resourceType":"Condition","id":"c","note":[{"text":"Müller"}],"名前":"Jose"}"#;
        let d = differences(a.as_bytes(), b.as_bytes(), 10);
        let brief: Vec<(&str, &str)> = d.iter().map(|d| (d.path.as_str(), d.found.as_str())).collect();
        assert_eq!(brief, vec![("note[0].text", "\"Müller\""), ("名前", "\"Jose\"")]);
        let shown = &d[0].expected;
        assert_eq!(shown.chars().count(), SHOWN + 3, "{shown}");
        assert!(shown.ends_with("...") && format!("\"{long}\"").starts_with(shown.trim_end_matches("...")));
        assert_eq!(d[1].expected, "\"José\"");
    }
}
