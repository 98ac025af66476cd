//! `_typeFilter`: FHIR search queries evaluated against exported resources
//! (SRV-088..094, E-03).
//!
//! Each query is `Type?param=value&...`: parameters are AND-ed, comma-separated
//! values OR-ed, and several queries for one type OR-ed. Supported parameter
//! kinds are token, date, reference and string, with the modifiers `:not`,
//! `:missing`, `:exact`, `:contains` and reference type modifiers. Anything
//! else is rejected with a message naming the query.

use serde_json::Value;

use crate::data::clock::days_from_civil;

/// The kind of a search parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Codes, Codings, CodeableConcepts, Identifiers, booleans.
    Token,
    /// dates, dateTimes, instants and Periods.
    Date,
    /// References.
    Reference,
    /// Strings, HumanNames, Addresses.
    String,
}

use ParamKind::{Date, Reference as Ref, String as Str, Token};

/// Parameters every type supports.
const COMMON: &[(&str, ParamKind, &[&str])] = &[("_id", Token, &["id"]), ("_lastUpdated", Date, &["meta.lastUpdated"])];

/// Per-type search parameters: type, name, kind, element paths.
pub const SEARCH_PARAMS: &[(&str, &str, ParamKind, &[&str])] = &[
    ("Patient", "gender", Token, &["gender"]),
    ("Patient", "birthdate", Date, &["birthDate"]),
    ("Patient", "identifier", Token, &["identifier"]),
    ("Patient", "name", Str, &["name"]),
    ("Patient", "family", Str, &["name.family"]),
    ("Patient", "given", Str, &["name.given"]),
    ("Patient", "address-state", Str, &["address.state"]),
    ("Patient", "address-city", Str, &["address.city"]),
    ("Patient", "general-practitioner", Ref, &["generalPractitioner"]),
    ("Patient", "organization", Ref, &["managingOrganization"]),
    ("Encounter", "status", Token, &["status"]),
    ("Encounter", "class", Token, &["class"]),
    ("Encounter", "type", Token, &["type"]),
    ("Encounter", "date", Date, &["period"]),
    ("Encounter", "patient", Ref, &["subject"]),
    ("Encounter", "subject", Ref, &["subject"]),
    ("Encounter", "practitioner", Ref, &["participant.individual"]),
    ("Encounter", "service-provider", Ref, &["serviceProvider"]),
    ("Condition", "code", Token, &["code"]),
    ("Condition", "clinical-status", Token, &["clinicalStatus"]),
    ("Condition", "category", Token, &["category"]),
    ("Condition", "onset-date", Date, &["onsetDateTime"]),
    ("Condition", "recorded-date", Date, &["recordedDate"]),
    ("Condition", "patient", Ref, &["subject"]),
    ("Condition", "subject", Ref, &["subject"]),
    ("Condition", "encounter", Ref, &["encounter"]),
    ("Observation", "code", Token, &["code"]),
    ("Observation", "category", Token, &["category"]),
    ("Observation", "status", Token, &["status"]),
    ("Observation", "date", Date, &["effectiveDateTime", "effectivePeriod"]),
    ("Observation", "patient", Ref, &["subject"]),
    ("Observation", "subject", Ref, &["subject"]),
    ("Observation", "encounter", Ref, &["encounter"]),
    ("Procedure", "code", Token, &["code"]),
    ("Procedure", "status", Token, &["status"]),
    ("Procedure", "date", Date, &["performedDateTime", "performedPeriod"]),
    ("Procedure", "patient", Ref, &["subject"]),
    ("Procedure", "subject", Ref, &["subject"]),
    ("Procedure", "encounter", Ref, &["encounter"]),
    ("MedicationRequest", "code", Token, &["medicationCodeableConcept"]),
    ("MedicationRequest", "status", Token, &["status"]),
    ("MedicationRequest", "intent", Token, &["intent"]),
    ("MedicationRequest", "authoredon", Date, &["authoredOn"]),
    ("MedicationRequest", "patient", Ref, &["subject"]),
    ("MedicationRequest", "subject", Ref, &["subject"]),
    ("MedicationRequest", "encounter", Ref, &["encounter"]),
    ("MedicationRequest", "requester", Ref, &["requester"]),
    ("Immunization", "vaccine-code", Token, &["vaccineCode"]),
    ("Immunization", "status", Token, &["status"]),
    ("Immunization", "date", Date, &["occurrenceDateTime"]),
    ("Immunization", "patient", Ref, &["patient"]),
    ("AllergyIntolerance", "code", Token, &["code"]),
    ("AllergyIntolerance", "clinical-status", Token, &["clinicalStatus"]),
    ("AllergyIntolerance", "category", Token, &["category"]),
    ("AllergyIntolerance", "date", Date, &["recordedDate"]),
    ("AllergyIntolerance", "patient", Ref, &["patient"]),
    ("DiagnosticReport", "code", Token, &["code"]),
    ("DiagnosticReport", "category", Token, &["category"]),
    ("DiagnosticReport", "status", Token, &["status"]),
    ("DiagnosticReport", "date", Date, &["effectiveDateTime", "effectivePeriod"]),
    ("DiagnosticReport", "patient", Ref, &["subject"]),
    ("DiagnosticReport", "subject", Ref, &["subject"]),
    ("DiagnosticReport", "encounter", Ref, &["encounter"]),
    ("DiagnosticReport", "result", Ref, &["result"]),
    ("DocumentReference", "type", Token, &["type"]),
    ("DocumentReference", "category", Token, &["category"]),
    ("DocumentReference", "status", Token, &["status"]),
    ("DocumentReference", "date", Date, &["date"]),
    ("DocumentReference", "patient", Ref, &["subject"]),
    ("DocumentReference", "subject", Ref, &["subject"]),
    ("DocumentReference", "author", Ref, &["author"]),
    ("CarePlan", "status", Token, &["status"]),
    ("CarePlan", "intent", Token, &["intent"]),
    ("CarePlan", "category", Token, &["category"]),
    ("CarePlan", "date", Date, &["period"]),
    ("CarePlan", "patient", Ref, &["subject"]),
    ("CarePlan", "subject", Ref, &["subject"]),
    ("CareTeam", "status", Token, &["status"]),
    ("CareTeam", "patient", Ref, &["subject"]),
    ("CareTeam", "subject", Ref, &["subject"]),
    ("CareTeam", "participant", Ref, &["participant.member"]),
    ("Coverage", "status", Token, &["status"]),
    ("Coverage", "type", Token, &["type"]),
    ("Coverage", "beneficiary", Ref, &["beneficiary"]),
    ("Coverage", "patient", Ref, &["beneficiary"]),
    ("Coverage", "payor", Ref, &["payor"]),
    ("Claim", "status", Token, &["status"]),
    ("Claim", "use", Token, &["use"]),
    ("Claim", "created", Date, &["created"]),
    ("Claim", "patient", Ref, &["patient"]),
    ("Claim", "provider", Ref, &["provider"]),
    ("ExplanationOfBenefit", "status", Token, &["status"]),
    ("ExplanationOfBenefit", "created", Date, &["created"]),
    ("ExplanationOfBenefit", "patient", Ref, &["patient"]),
    ("ExplanationOfBenefit", "claim", Ref, &["claim"]),
    ("ExplanationOfBenefit", "provider", Ref, &["provider"]),
    ("Device", "type", Token, &["type"]),
    ("Device", "status", Token, &["status"]),
    ("Device", "patient", Ref, &["patient"]),
    ("Device", "manufacturer", Str, &["manufacturer"]),
    ("Provenance", "target", Ref, &["target"]),
    ("Provenance", "patient", Ref, &["target"]),
    ("Provenance", "recorded", Date, &["recorded"]),
    ("Practitioner", "name", Str, &["name"]),
    ("Practitioner", "family", Str, &["name.family"]),
    ("Practitioner", "identifier", Token, &["identifier"]),
    ("Practitioner", "gender", Token, &["gender"]),
    ("Organization", "name", Str, &["name"]),
    ("Organization", "identifier", Token, &["identifier"]),
    ("Organization", "type", Token, &["type"]),
    ("Location", "name", Str, &["name"]),
    ("Location", "status", Token, &["status"]),
    ("Location", "organization", Ref, &["managingOrganization"]),
    ("Location", "address-state", Str, &["address.state"]),
    ("Group", "name", Str, &["name"]),
    ("Group", "identifier", Token, &["identifier"]),
    ("Group", "type", Token, &["type"]),
];

/// Search-result parameters that may not appear in `_typeFilter` (SRV-091).
const RESULT_PARAMS: &[&str] =
    &["_sort", "_include", "_revinclude", "_elements", "_count", "_summary", "_total", "_contained", "_containedType"];

/// The search parameters usable in `_typeFilter` for `ty` (for the CapabilityStatement, SRV-208).
pub fn params_for(ty: &str) -> impl Iterator<Item = (&'static str, ParamKind)> + '_ {
    COMMON.iter().map(|(n, k, _)| (*n, *k)).chain(SEARCH_PARAMS.iter().filter(move |p| p.0 == ty).map(|p| (p.1, p.2)))
}

fn lookup(ty: &str, name: &str) -> Option<(ParamKind, &'static [&'static str])> {
    COMMON
        .iter()
        .find(|p| p.0 == name)
        .map(|p| (p.1, p.2))
        .or_else(|| SEARCH_PARAMS.iter().find(|p| p.0 == ty && p.1 == name).map(|p| (p.2, p.3)))
}

#[derive(Debug, Clone, PartialEq)]
enum Modifier {
    None,
    Not,
    Missing(bool),
    Exact,
    Contains,
    /// A reference's target type, `subject:Patient=...`.
    Type(String),
}

/// One `param=v1,v2` of a query.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    kind: ParamKind,
    paths: &'static [&'static str],
    modifier: Modifier,
    values: Vec<String>,
}

/// One parsed `Type?query`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeQuery {
    /// The resource type it filters.
    pub resource_type: String,
    clauses: Vec<Clause>,
}

impl TypeQuery {
    /// Parses `Type?param=value&...`; the error says what is wrong and names the query.
    pub fn parse(query: &str) -> Result<TypeQuery, String> {
        let (ty, search) = query
            .split_once('?')
            .ok_or_else(|| format!("_typeFilter {query:?} must have the form Type?search-parameters"))?;
        if ty.is_empty() || !ty.bytes().all(|b| b.is_ascii_alphabetic()) || !ty.as_bytes()[0].is_ascii_uppercase() {
            return Err(format!("_typeFilter {query:?} must start with a resource type (SRV-092)"));
        }
        let mut clauses = Vec::new();
        for (name, value) in form_urlencoded::parse(search.as_bytes()) {
            let (base, modifier) = match name.split_once(':') {
                Some((b, m)) => (b, Some(m)),
                None => (name.as_ref(), None),
            };
            if RESULT_PARAMS.contains(&base) {
                return Err(format!(
                    "_typeFilter {query:?} uses {base}, a result parameter not allowed in _typeFilter (SRV-091)"
                ));
            }
            if base.contains('.') {
                return Err(format!("_typeFilter {query:?}: chained parameter {base} is not supported (SRV-094)"));
            }
            let (kind, paths) = lookup(ty, base).ok_or_else(|| {
                let known: Vec<_> = params_for(ty).map(|p| p.0).collect();
                format!(
                    "_typeFilter {query:?}: {ty} has no supported search parameter {base:?}; supported: {}",
                    known.join(", ")
                )
            })?;
            let modifier = match (modifier, kind) {
                (None, _) => Modifier::None,
                (Some("missing"), _) => match value.as_ref() {
                    "true" => Modifier::Missing(true),
                    "false" => Modifier::Missing(false),
                    v => return Err(format!("_typeFilter {query:?}: :missing takes true or false, not {v:?}")),
                },
                (Some("not"), Token) => Modifier::Not,
                (Some("exact"), Str) => Modifier::Exact,
                (Some("contains"), Str) => Modifier::Contains,
                (Some(t), Ref) if t.as_bytes().first().is_some_and(u8::is_ascii_uppercase) => {
                    Modifier::Type(t.to_string())
                }
                (Some(m), _) => {
                    return Err(format!("_typeFilter {query:?}: modifier :{m} is not supported on {base}"));
                }
            };
            let values: Vec<String> = value.split(',').map(str::to_string).collect();
            if kind == Date && !matches!(modifier, Modifier::Missing(_)) {
                for v in &values {
                    parse_date_query(v)
                        .ok_or_else(|| format!("_typeFilter {query:?}: {v:?} is not a FHIR date search value"))?;
                }
            }
            clauses.push(Clause { kind, paths, modifier, values });
        }
        if clauses.is_empty() {
            return Err(format!("_typeFilter {query:?} has no search parameters"));
        }
        Ok(TypeQuery { resource_type: ty.to_string(), clauses })
    }

    /// Whether `resource` meets every clause of the query.
    pub fn matches(&self, resource: &Value) -> bool {
        self.clauses.iter().all(|c| c.matches(resource))
    }
}

impl Clause {
    fn matches(&self, resource: &Value) -> bool {
        let mut found = Vec::new();
        for path in self.paths {
            collect(resource, path, &mut found);
        }
        match &self.modifier {
            Modifier::Missing(missing) => return found.is_empty() == *missing,
            Modifier::Not => return !self.values.iter().any(|v| found.iter().any(|e| token_matches(e, v))),
            _ => {}
        }
        self.values.iter().any(|v| {
            found.iter().any(|e| match self.kind {
                Token => token_matches(e, v),
                Date => date_matches(e, v),
                Ref => reference_matches(e, v, &self.modifier),
                Str => string_matches(e, v, &self.modifier),
            })
        })
    }
}

/// Every value at a dotted element path, arrays flattened.
fn collect<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let Some(child) = v.get(head) else { return };
    let items: Vec<&Value> = match child {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for item in items {
        match rest {
            Some(r) => collect(item, r, out),
            None => out.push(item),
        }
    }
}

fn token_matches(element: &Value, query: &str) -> bool {
    let (system, code) = match query.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, query),
    };
    let coding_matches = |sys: Option<&str>, value: Option<&str>| {
        let system_ok = match system {
            None => true,
            Some("") => sys.is_none(),
            Some(s) => sys == Some(s),
        };
        system_ok && (code.is_empty() || value == Some(code))
    };
    match element {
        Value::String(s) => system.is_none() && s == code,
        Value::Bool(b) => system.is_none() && code == if *b { "true" } else { "false" },
        Value::Object(o) => {
            if let Some(Value::Array(codings)) = o.get("coding") {
                return codings.iter().any(|c| {
                    coding_matches(c.get("system").and_then(Value::as_str), c.get("code").and_then(Value::as_str))
                });
            }
            let value = o.get("code").or_else(|| o.get("value")).and_then(Value::as_str);
            coding_matches(o.get("system").and_then(Value::as_str), value)
        }
        _ => false,
    }
}

fn reference_matches(element: &Value, query: &str, modifier: &Modifier) -> bool {
    let Some(reference) = element.get("reference").and_then(Value::as_str) else { return false };
    let wanted = match modifier {
        Modifier::Type(t) => format!("{t}/{query}"),
        _ => query.to_string(),
    };
    if wanted.contains('/') {
        reference == wanted || wanted.ends_with(&format!("/{reference}")) || reference.ends_with(&format!("/{wanted}"))
    } else {
        reference.rsplit('/').next() == Some(wanted.as_str())
    }
}

fn string_matches(element: &Value, query: &str, modifier: &Modifier) -> bool {
    let mut texts = Vec::new();
    match element {
        Value::String(s) => texts.push(s.as_str()),
        Value::Object(o) => {
            for key in ["text", "family", "given", "prefix", "line", "city", "state", "postalCode", "country"] {
                match o.get(key) {
                    Some(Value::String(s)) => texts.push(s),
                    Some(Value::Array(a)) => texts.extend(a.iter().filter_map(Value::as_str)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    let q = query.to_lowercase();
    texts.iter().any(|t| match modifier {
        Modifier::Exact => *t == query,
        Modifier::Contains => t.to_lowercase().contains(&q),
        _ => t.to_lowercase().starts_with(&q),
    })
}

/// A half-open interval of Unix seconds.
type Interval = (i64, i64);

/// Parses a FHIR date, dateTime or instant of any precision into the interval it covers.
pub fn parse_date_interval(s: &str) -> Option<Interval> {
    let num = |r: &str| -> Option<i64> { r.bytes().all(|b| b.is_ascii_digit()).then(|| r.parse().ok()).flatten() };
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let year = num(parts.first().filter(|p| p.len() == 4)?)?;
    let month = parts.get(1).map(|m| num(m).filter(|m| (1..=12).contains(m))).unwrap_or(Some(1))? as u32;
    let day = parts.get(2).map(|d| num(d).filter(|d| (1..=31).contains(d))).unwrap_or(Some(1))? as u32;
    if parts.len() > 3 {
        return None;
    }
    let start = days_from_civil(year, month, day) * 86_400;
    if time.is_none() {
        let end = match parts.len() {
            1 => days_from_civil(year + 1, 1, 1) * 86_400,
            2 if month == 12 => days_from_civil(year + 1, 1, 1) * 86_400,
            2 => days_from_civil(year, month + 1, 1) * 86_400,
            _ => start + 86_400,
        };
        return Some((start, end));
    }
    if parts.len() != 3 {
        return None;
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let _ = start;
    Some((t.unix_timestamp(), t.unix_timestamp() + 1))
}

fn parse_date_query(v: &str) -> Option<(&str, Interval)> {
    let (prefix, rest) = match v.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le" | "sa" | "eb")) => (p, &v[2..]),
        _ => ("eq", v),
    };
    Some((prefix, parse_date_interval(rest)?))
}

fn element_interval(element: &Value) -> Option<Interval> {
    match element {
        Value::String(s) => parse_date_interval(s),
        Value::Object(o) => {
            let start = o.get("start").and_then(Value::as_str).and_then(parse_date_interval).map(|i| i.0);
            let end = o.get("end").and_then(Value::as_str).and_then(parse_date_interval).map(|i| i.1);
            Some((start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)))
        }
        _ => None,
    }
}

fn date_matches(element: &Value, query: &str) -> bool {
    let (Some((prefix, (sl, sh))), Some((tl, th))) = (parse_date_query(query), element_interval(element)) else {
        return false;
    };
    let eq = sl <= tl && th <= sh;
    match prefix {
        "eq" => eq,
        "ne" => !eq,
        "gt" => th > sh,
        "lt" => tl < sl,
        "ge" => th > sh || eq,
        "le" => tl < sl || eq,
        "sa" => tl >= sh,
        "eb" => th <= sl,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs() -> Value {
        json!({"resourceType": "Observation", "id": "obs-1", "status": "final",
            "meta": {"lastUpdated": "2021-03-04T05:06:07Z"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/pat-1"},
            "effectiveDateTime": "2021-03-01T10:00:00Z"})
    }

    fn q(s: &str) -> TypeQuery {
        TypeQuery::parse(s).unwrap()
    }

    #[test]
    fn tokens_match_codes_codings_and_systems() {
        assert!(q("Observation?code=8867-4").matches(&obs()));
        assert!(q("Observation?code=http://loinc.org|8867-4").matches(&obs()));
        assert!(!q("Observation?code=http://snomed.info/sct|8867-4").matches(&obs()));
        assert!(q("Observation?code=1,8867-4").matches(&obs()));
        assert!(q("Observation?status=final&code=8867-4").matches(&obs()));
        assert!(!q("Observation?status=final&code=1").matches(&obs()));
        assert!(q("Observation?status:not=amended").matches(&obs()));
        assert!(q("Observation?_id=obs-1").matches(&obs()));
    }

    #[test]
    fn dates_compare_by_interval_with_prefixes() {
        assert!(q("Observation?date=2021").matches(&obs()));
        assert!(q("Observation?date=2021-03-01").matches(&obs()));
        assert!(q("Observation?date=gt2021-02-28").matches(&obs()));
        assert!(!q("Observation?date=gt2021-03-01").matches(&obs()));
        assert!(q("Observation?date=ge2021-03-01").matches(&obs()));
        assert!(q("Observation?date=lt2021-03-02&date=gt2021-02").matches(&obs()));
        assert!(q("Observation?_lastUpdated=ge2021-03-04T05:06:07Z").matches(&obs()));
        assert!(q("Observation?date=gt2021-03-01T09:00:00%2B00:00").matches(&obs()));
    }

    #[test]
    fn references_and_strings() {
        assert!(q("Observation?patient=pat-1").matches(&obs()));
        assert!(q("Observation?subject=Patient/pat-1").matches(&obs()));
        assert!(q("Observation?subject:Patient=pat-1").matches(&obs()));
        assert!(!q("Observation?patient=pat-2").matches(&obs()));
        let patient = json!({"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Anna"]}]});
        assert!(q("Patient?name=smi").matches(&patient));
        assert!(q("Patient?given=ann").matches(&patient));
        assert!(!q("Patient?family:exact=smith").matches(&patient));
        assert!(q("Patient?family:contains=MIT").matches(&patient));
        assert!(q("Patient?gender:missing=true").matches(&patient));
    }

    #[test]
    fn unsupported_queries_are_rejected_with_reasons() {
        for (query, needle) in [
            ("Observation", "form Type?"),
            ("Observation?_sort=date", "SRV-091"),
            ("Observation?subject.name=x", "chained"),
            ("Observation?foo=1", "no supported search parameter"),
            ("Observation?code:below=1", "modifier :below"),
            ("Observation?date=yesterday", "not a FHIR date"),
            ("?code=1", "resource type"),
        ] {
            let err = TypeQuery::parse(query).unwrap_err();
            assert!(err.contains(needle), "{query}: {err}");
        }
    }
}
