//! What the server says it can search (CLI-049): before a kick-off with
//! `_typeFilter`, the CapabilityStatement is read and every search parameter
//! a filter uses is looked up among the type's `searchParam`s (and the
//! server-wide ones). A parameter the server does not list is reported as an
//! [`Event::TypeFilterUnsupported`]; the kick-off still goes ahead, since the
//! server decides (it may refuse the filter with an OperationOutcome, or
//! ignore it, CLI-048).

use reqwest::Method;
use serde_json::Value;

use crate::events::Event;
use crate::http::Http;

/// Search parameters a `_typeFilter` query names that the CapabilityStatement
/// `cs` does not list: `(filter, parameter)` pairs, in order.
pub fn unsupported_parameters(cs: &Value, filters: &[String]) -> Vec<(String, String)> {
    let rest = &cs["rest"][0];
    let names = |v: &Value| -> Vec<String> {
        v["searchParam"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect()
    };
    let server_wide = names(rest);
    let mut out = Vec::new();
    for filter in filters {
        let Some((ty, query)) = filter.split_once('?') else { continue };
        let for_type: Vec<String> =
            rest["resource"].as_array().into_iter().flatten().filter(|r| r["type"] == ty).flat_map(names).collect();
        for (key, _) in url::form_urlencoded::parse(query.as_bytes()) {
            // `code:not`, `subject:Patient`, `subject.name`: the parameter is the part before either.
            let name = key.split([':', '.']).next().unwrap_or(&key);
            let listed = for_type.iter().chain(&server_wide).any(|n| n == name);
            if !listed && !out.iter().any(|(f, p)| f == filter && p == name) {
                out.push((filter.clone(), name.to_string()));
            }
        }
    }
    out
}

/// Reads the CapabilityStatement at `base/metadata` and reports every
/// `_typeFilter` parameter it does not list. A statement that cannot be read
/// is reported as a problem with the first filter, not as a failed export.
pub(crate) async fn check_type_filters(http: &Http, base: &url::Url, filters: &[String], emit: impl Fn(Event)) {
    if filters.is_empty() {
        return;
    }
    let Ok(url) = base.join("metadata") else { return };
    let statement =
        match http.send(Method::GET, url.as_str(), false, |b| b.header("Accept", "application/fhir+json")).await {
            Ok(sent) if sent.response.status().is_success() => sent.response.json::<Value>().await.ok(),
            _ => None,
        };
    match statement {
        Some(cs) if cs["resourceType"] == "CapabilityStatement" => {
            for (filter, parameter) in unsupported_parameters(&cs, filters) {
                emit(Event::TypeFilterUnsupported { filter, parameter });
            }
        }
        _ => emit(Event::TypeFilterUnsupported {
            filter: filters[0].clone(),
            parameter: "(no readable CapabilityStatement)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_are_looked_up_per_type_and_server_wide() {
        let cs = json!({"resourceType": "CapabilityStatement", "rest": [{
            "searchParam": [{"name": "_lastUpdated"}],
            "resource": [
                {"type": "Observation", "searchParam": [{"name": "code"}, {"name": "subject"}]},
                {"type": "Condition", "searchParam": [{"name": "category"}]}
            ]
        }]});
        let filters = [
            "Observation?code=1234-5&_lastUpdated=gt2020".to_string(),
            "Observation?code%3Anot=1&subject.name=x&status=final".to_string(),
            "Condition?code=1".to_string(),
            "no question mark".to_string(),
        ];
        assert_eq!(
            unsupported_parameters(&cs, &filters),
            vec![(filters[1].clone(), "status".to_string()), (filters[2].clone(), "code".to_string()),]
        );
    }
}
