//! Coping with servers that ignore `_typeFilter` (CLI-048, quirk
//! `ignores-type-filter`): after the download the client checks the output of
//! each filtered type and reports how many resources plainly do not match.
//!
//! It reports, it does not delete: a client cannot evaluate every search
//! parameter exactly as a server does (dates, chains, custom parameters), and
//! dropping data it cannot prove unwanted would lose data. Only token
//! parameters on top-level codes are judged ([`TOKEN_PARAMS`]); a query with
//! any other parameter counts as matching.

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

/// Token search parameters judged client-side; each names the top-level
/// element of the same name in camel case (`clinical-status` → `clinicalStatus`).
pub const TOKEN_PARAMS: &[&str] =
    &["status", "category", "code", "clinical-status", "verification-status", "gender", "intent", "class", "type"];

/// One `_typeFilter` query: its type and `(element, accepted values)` pairs.
#[derive(Debug, Clone, PartialEq)]
struct Query {
    ty: String,
    /// `None` when a parameter cannot be judged client-side.
    tests: Option<Vec<(String, Vec<String>)>>,
}

fn parse(query: &str) -> Option<Query> {
    let (ty, params) = query.split_once('?')?;
    let mut tests = Some(Vec::new());
    for (name, value) in url::form_urlencoded::parse(params.as_bytes()) {
        match (TOKEN_PARAMS.contains(&name.as_ref()), tests.as_mut()) {
            (true, Some(t)) => t.push((camel(&name), value.split(',').map(str::to_string).collect())),
            _ => tests = None,
        }
    }
    Some(Query { ty: ty.to_string(), tests })
}

fn camel(kebab: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in kebab.chars() {
        match c {
            '-' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether a token value (`code` or `system|code`) matches a code, Coding or CodeableConcept.
fn token_matches(v: &Value, wanted: &str) -> bool {
    let (system, code) = match wanted.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, wanted),
    };
    match v {
        Value::String(s) => system.is_none() && s == code,
        Value::Array(items) => items.iter().any(|i| token_matches(i, wanted)),
        Value::Object(o) => {
            if let Some(codings) = o.get("coding") {
                return token_matches(codings, wanted);
            }
            o.get("code").and_then(Value::as_str) == Some(code)
                && system.is_none_or(|s| o.get("system").and_then(Value::as_str) == Some(s))
        }
        _ => false,
    }
}

/// Whether `resource` may match one of `queries` (all of its type): false only
/// when every query has a judged parameter it plainly fails.
fn may_match(resource: &Value, queries: &[&Query]) -> bool {
    queries.iter().any(|q| match &q.tests {
        None => true,
        Some(tests) => tests
            .iter()
            .all(|(element, values)| resource.get(element).is_some_and(|v| values.iter().any(|w| token_matches(v, w)))),
    })
}

/// Per filtered type, how many resources in `out/{Type}.ndjson` plainly do
/// not match the `_typeFilter` queries asked for (types with none are left out).
pub fn beyond_filters(out: &Path, type_filters: &[String]) -> Vec<(String, u64, u64)> {
    let queries: Vec<Query> = type_filters.iter().filter_map(|q| parse(q)).collect();
    let mut types: Vec<&str> = queries.iter().map(|q| q.ty.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let mut found = Vec::new();
    for ty in types {
        let of_type: Vec<&Query> = queries.iter().filter(|q| q.ty == ty).collect();
        let Ok(file) = std::fs::File::open(out.join(format!("{ty}.ndjson"))) else { continue };
        let (mut total, mut beyond) = (0, 0);
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(resource) = serde_json::from_str::<Value>(&line) else { continue };
            total += 1;
            if !may_match(&resource, &of_type) {
                beyond += 1;
            }
        }
        if beyond > 0 {
            found.push((ty.to_string(), beyond, total));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn token_queries_are_judged_and_others_count_as_matching() {
        let lab = parse("Observation?category=laboratory&status=final,amended").unwrap();
        let dated = parse("Observation?date=ge2020-01-01").unwrap();
        let obs = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
        let vital = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}]});
        assert!(may_match(&obs, &[&lab]));
        assert!(!may_match(&vital, &[&lab]));
        assert!(may_match(&vital, &[&lab, &dated]), "an unjudged query may match");
        let sys = parse("Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory");
        assert!(may_match(&obs, &[&sys.unwrap()]));
        let clinical = parse("Condition?clinical-status=active").unwrap();
        assert_eq!(clinical.tests.as_ref().unwrap()[0].0, "clinicalStatus");
    }
}
