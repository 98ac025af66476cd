//! Kick-off parameters: GET query strings and POST `Parameters` bodies parse
//! into one typed [`ExportParams`], once, at the edge (SRV-022..026, SRV-050..104).
//!
//! Problems with individual parameters are collected as [`Problem`]s rather
//! than failing at the first one: a strict kick-off answers 400 listing them
//! all; under `Prefer: handling=lenient` each is dropped and reported in the
//! manifest's `error` file (SRV-045, SRV-046).

use bulkmock_wire::IssueType;
use serde_json::Value;

/// One rejected or ignored parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The parameter name, as the OperationOutcome `expression`.
    pub param: String,
    /// The IssueType code.
    pub code: IssueType,
    /// What was wrong, for a person.
    pub message: String,
}

impl Problem {
    /// A problem with `param`.
    pub fn new(param: &str, code: IssueType, message: impl Into<String>) -> Self {
        Problem { param: param.to_string(), code, message: message.into() }
    }
}

/// The kick-off parameters, parsed but not yet checked against the data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportParams {
    /// `_outputFormat`.
    pub output_format: Option<String>,
    /// `_since`, Unix seconds.
    pub since: Option<i64>,
    /// `_until`, Unix seconds.
    pub until: Option<i64>,
    /// `_type`, split on commas, repeats joined (SRV-025).
    pub types: Option<Vec<String>>,
    /// `_elements`, split on commas.
    pub elements: Vec<String>,
    /// `patient` references (POST only).
    pub patients: Vec<String>,
    /// `_typeFilter` queries, one per entry (E-03 splitting applied).
    pub type_filters: Vec<String>,
    /// `includeAssociatedData` codes.
    pub include_associated: Vec<String>,
    /// `organizeOutputBy`.
    pub organize_output_by: Option<String>,
    /// `allowPartialManifests`.
    pub allow_partial_manifests: bool,
    /// POST `Parameters` entries whose one value joined several with commas
    /// (`_type`, `_elements`, `includeAssociatedData`, `_typeFilter` across types):
    /// accepted, but the v4 ballot says to repeat the entry instead (CLI-045).
    pub comma_joined: Vec<String>,
}

/// A parameter value before interpretation.
enum Raw {
    Text(String),
    Reference(String),
    Bool(bool),
}

/// Parses a GET kick-off query string.
pub fn from_query(query: &str, problems: &mut Vec<Problem>) -> ExportParams {
    let pairs = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Raw::Text(v.into_owned())))
        .collect::<Vec<_>>();
    let mut params = ExportParams::default();
    for (name, raw) in pairs {
        if name == "patient" {
            // SRV-081: `patient` is defined for POST kick-offs only.
            problems.push(Problem::new(
                "patient",
                IssueType::NotSupported,
                "the patient parameter is only accepted in a POST Parameters body (Bulk Data v2/v3); \
                 send the kick-off as POST",
            ));
            continue;
        }
        apply(&mut params, &name, raw, problems);
    }
    params
}

/// Parses a POST kick-off body, a FHIR `Parameters` resource.
pub fn from_parameters(body: &Value, problems: &mut Vec<Problem>) -> Result<ExportParams, Problem> {
    let invalid = |m: &str| Problem::new("Parameters", IssueType::Invalid, m.to_string());
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(invalid("the POST body must be a FHIR Parameters resource (resourceType \"Parameters\")"));
    }
    let mut params = ExportParams::default();
    let entries = match body.get("parameter") {
        None => return Ok(params),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(invalid("Parameters.parameter must be an array")),
    };
    for (i, entry) in entries.iter().enumerate() {
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            return Err(invalid(&format!("Parameters.parameter[{i}] has no name")));
        };
        match typed_value(name, entry) {
            Ok(raw) => {
                if let Raw::Text(text) = &raw
                    && joins_values(name, text)
                    && !params.comma_joined.iter().any(|n| n == name)
                {
                    params.comma_joined.push(name.to_string());
                }
                apply(&mut params, name, raw, problems)
            }
            Err(message) => problems.push(Problem::new(name, IssueType::Invalid, message)),
        }
    }
    Ok(params)
}

/// Whether one POST value of `name` holds several values joined with commas (CLI-045).
fn joins_values(name: &str, text: &str) -> bool {
    match name {
        "_type" | "_elements" | "includeAssociatedData" => split_commas(text).count() > 1,
        "_typeFilter" => split_type_filters(text).len() > 1,
        _ => false,
    }
}

/// The `value[x]` of a Parameters entry, checked against the parameter's type.
fn typed_value(name: &str, entry: &Value) -> Result<Raw, String> {
    let get = |key: &str| entry.get(key);
    let expect = |key: &str| -> Result<String, String> {
        get(key).and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            let found = entry
                .as_object()
                .and_then(|o| o.keys().find(|k| k.starts_with("value")).cloned())
                .unwrap_or_else(|| "no value".into());
            format!("parameter {name} must be given as {key}, found {found}")
        })
    };
    Ok(match name {
        "_since" | "_until" => Raw::Text(expect("valueInstant")?),
        "patient" => {
            let reference = get("valueReference").and_then(|r| r.get("reference")).and_then(Value::as_str);
            Raw::Reference(
                reference
                    .ok_or_else(|| "parameter patient must be a valueReference with a reference".to_string())?
                    .to_string(),
            )
        }
        "allowPartialManifests" => Raw::Bool(
            get("valueBoolean")
                .and_then(Value::as_bool)
                .ok_or_else(|| "parameter allowPartialManifests must be a valueBoolean".to_string())?,
        ),
        // E-05: a code in v2/v3, a Coding in the v4 ballot; accept both and a string.
        "includeAssociatedData" => {
            if let Some(code) = get("valueCoding").and_then(|c| c.get("code")).and_then(Value::as_str) {
                Raw::Text(code.to_string())
            } else if let Some(code) = get("valueCode").or(get("valueString")).and_then(Value::as_str) {
                Raw::Text(code.to_string())
            } else {
                return Err("parameter includeAssociatedData must be a valueCode or valueCoding".into());
            }
        }
        _ => Raw::Text(expect("valueString")?),
    })
}

/// Splits a comma list, dropping empty items.
fn split_commas(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string)
}

/// E-03: split a `_typeFilter` value on commas only where a new `Type?` query starts,
/// so commas inside a search value (`status=active,completed`) survive.
pub fn split_type_filters(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in value.match_indices(',') {
        let rest = &value[i + 1..];
        let type_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let starts_query =
            type_len >= 2 && rest.as_bytes()[0].is_ascii_uppercase() && rest.as_bytes().get(type_len) == Some(&b'?');
        if starts_query {
            out.push(value[start..i].to_string());
            start = i + 1;
        }
    }
    out.push(value[start..].to_string());
    out.into_iter().filter(|q| !q.is_empty()).collect()
}

fn apply(params: &mut ExportParams, name: &str, raw: Raw, problems: &mut Vec<Problem>) {
    let text = match raw {
        Raw::Reference(r) => {
            params.patients.push(r);
            return;
        }
        Raw::Bool(b) => {
            params.allow_partial_manifests = b;
            return;
        }
        Raw::Text(t) => t,
    };
    match name {
        "_outputFormat" => params.output_format = Some(text),
        "_since" => params.since = parse_instant(name, &text, problems),
        "_until" => params.until = parse_instant(name, &text, problems),
        "_type" => params.types.get_or_insert_with(Vec::new).extend(split_commas(&text)),
        "_elements" => params.elements.extend(split_commas(&text)),
        "_typeFilter" => params.type_filters.extend(split_type_filters(&text)),
        "includeAssociatedData" => params.include_associated.extend(split_commas(&text)),
        "organizeOutputBy" => params.organize_output_by = Some(text),
        "allowPartialManifests" => match text.as_str() {
            "true" => params.allow_partial_manifests = true,
            "false" => params.allow_partial_manifests = false,
            other => problems.push(Problem::new(
                name,
                IssueType::Invalid,
                format!("allowPartialManifests must be true or false, not {other:?}"),
            )),
        },
        "patient" => params.patients.push(text),
        other => problems.push(Problem::new(
            other,
            IssueType::NotSupported,
            format!(
                "unknown kick-off parameter {other:?}; supported: _outputFormat, _since, _until, _type, \
                 _elements, patient, _typeFilter, includeAssociatedData, organizeOutputBy, allowPartialManifests"
            ),
        )),
    }
}

/// Parses a FHIR `instant` (SRV-060, CLI-051): date, time with seconds, and a zone.
fn parse_instant(name: &str, text: &str, problems: &mut Vec<Problem>) -> Option<i64> {
    match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Some(t.unix_timestamp()),
        Err(_) => {
            let hint = if text.contains(' ') && text.contains('T') {
                " (a space where the zone should be usually means a '+' was not URL-encoded as %2B)"
            } else if !text.contains('T') {
                " (a FHIR instant needs a time and a zone, e.g. 2024-01-01T00:00:00Z)"
            } else {
                ""
            };
            problems.push(Problem::new(
                name,
                IssueType::Invalid,
                format!("{name} must be a FHIR instant such as 2024-01-01T00:00:00Z, got {text:?}{hint}"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_comma_joined_types_are_the_same() {
        let mut p = Vec::new();
        let a = from_query("_type=Patient,Observation", &mut p);
        let b = from_query("_type=Patient&_type=Observation", &mut p);
        assert_eq!(a.types, b.types);
        assert!(p.is_empty());
    }

    #[test]
    fn comma_joined_post_values_are_noted_but_accepted() {
        let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient,Observation"},
            {"name": "_type", "valueString": "Condition"},
            {"name": "_typeFilter", "valueString": "Observation?status=final,amended"},
            {"name": "_elements", "valueString": "id,Patient.name"}
        ]});
        let mut p = Vec::new();
        let params = from_parameters(&body, &mut p).unwrap();
        assert_eq!(params.types.unwrap(), vec!["Patient", "Observation", "Condition"]);
        // A search value with commas is one query, not a join (CLI-045 is about joining values).
        assert_eq!(params.comma_joined, vec!["_type", "_elements"]);
        assert!(p.is_empty());
    }

    #[test]
    fn type_filter_commas_split_only_between_queries() {
        assert_eq!(
            split_type_filters("Observation?status=final,amended,Condition?code=1,2"),
            vec!["Observation?status=final,amended", "Condition?code=1,2"]
        );
        assert_eq!(split_type_filters("MedicationRequest?status=active"), vec!["MedicationRequest?status=active"]);
    }

    #[test]
    fn bad_instants_and_unknown_params_are_problems_naming_the_parameter() {
        let mut p = Vec::new();
        let params = from_query("_since=2020-01-01&_until=2020-01-01T00:00:00 01:00&foo=1&patient=x", &mut p);
        assert_eq!(params.since, None);
        let names: Vec<_> = p.iter().map(|x| x.param.as_str()).collect();
        assert_eq!(names, vec!["_since", "_until", "foo", "patient"]);
        assert!(p[1].message.contains("%2B"));
    }

    #[test]
    fn parameters_body_values_are_type_checked() {
        let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "_since", "valueInstant": "2021-01-01T00:00:00+01:00"},
            {"name": "_type", "valueString": "Patient"},
            {"name": "_type", "valueString": "Observation"},
            {"name": "patient", "valueReference": {"reference": "Patient/pat-1"}},
            {"name": "includeAssociatedData", "valueCoding": {"code": "LatestProvenanceResources"}},
            {"name": "allowPartialManifests", "valueBoolean": true},
            {"name": "_until", "valueString": "2022-01-01T00:00:00Z"}
        ]});
        let mut p = Vec::new();
        let params = from_parameters(&body, &mut p).unwrap();
        assert_eq!(params.since, Some(1_609_455_600));
        assert_eq!(params.types.unwrap(), vec!["Patient", "Observation"]);
        assert_eq!(params.patients, vec!["Patient/pat-1"]);
        assert_eq!(params.include_associated, vec!["LatestProvenanceResources"]);
        assert!(params.allow_partial_manifests);
        assert!(params.comma_joined.is_empty(), "repeated entries join nothing");
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("valueInstant, found valueString"), "{}", p[0].message);
    }

    #[test]
    fn a_body_that_is_not_parameters_is_rejected() {
        let mut p = Vec::new();
        assert!(from_parameters(&serde_json::json!({"resourceType": "Patient"}), &mut p).is_err());
    }
}
