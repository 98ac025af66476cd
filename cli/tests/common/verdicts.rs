//! The verdicts of a JSON run report as snapshots keep them: per case its
//! verdict and the checks that did not pass (passing and skipped ones left out).

use std::collections::BTreeMap;

use serde_json::Value;

/// Case id -> `{verdict, findings}` (`findings` only when there are some).
pub fn of_cases(cases: &[Value]) -> BTreeMap<&str, Value> {
    cases
        .iter()
        .map(|c| {
            let findings: BTreeMap<&str, &str> = c["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|k| !matches!(k["verdict"].as_str(), Some("pass" | "skip")))
                .map(|k| (k["id"].as_str().unwrap_or("?"), k["verdict"].as_str().unwrap_or("?")))
                .collect();
            let entry = if findings.is_empty() {
                serde_json::json!({"verdict": c["verdict"]})
            } else {
                serde_json::json!({"verdict": c["verdict"], "findings": findings})
            };
            (c["id"].as_str().unwrap_or("?"), entry)
        })
        .collect()
}
