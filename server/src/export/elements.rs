//! `_elements`: trim exported resources to the requested top-level elements,
//! keeping mandatory ones and tagging the result SUBSETTED (SRV-072..076).

use std::collections::HashMap;

use serde_json::{Value, json};

/// Top-level elements with minimum cardinality 1 in FHIR R4, per type.
/// `resourceType`, `id` and `meta` are always kept.
const MANDATORY: &[(&str, &[&str])] = &[
    ("Encounter", &["status", "class"]),
    ("Observation", &["status", "code"]),
    ("Condition", &["subject"]),
    ("Procedure", &["status", "subject"]),
    ("MedicationRequest", &["status", "intent", "medication[x]", "subject"]),
    ("Immunization", &["status", "vaccineCode", "patient", "occurrence[x]"]),
    ("AllergyIntolerance", &["patient"]),
    ("DiagnosticReport", &["status", "code"]),
    ("DocumentReference", &["status", "content"]),
    ("CarePlan", &["status", "intent", "subject"]),
    ("Coverage", &["status", "beneficiary", "payor"]),
    ("Claim", &["status", "type", "use", "patient", "created", "provider", "priority", "insurance"]),
    (
        "ExplanationOfBenefit",
        &["status", "type", "use", "patient", "created", "insurer", "provider", "outcome", "insurance"],
    ),
    ("Provenance", &["target", "recorded", "agent"]),
    ("Group", &["type", "actual"]),
    ("Bundle", &["type"]),
];

/// The v3 ObservationValue code system of the SUBSETTED tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The parsed `_elements` list: elements for every type, and per type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Elements {
    every_type: Vec<String>,
    per_type: HashMap<String, Vec<String>>,
}

impl Elements {
    /// Parses `Type.element` and `element` entries; an error names the bad entry.
    pub fn parse(entries: &[String]) -> Result<Elements, String> {
        let mut elements = Elements::default();
        for entry in entries {
            let valid_name =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'[' || b == b']');
            match entry.split_once('.') {
                Some((ty, element)) if valid_name(ty) && valid_name(element) && !element.contains('.') => {
                    elements.per_type.entry(ty.to_string()).or_default().push(element.to_string());
                }
                None if valid_name(entry) => elements.every_type.push(entry.clone()),
                _ => {
                    return Err(format!(
                        "_elements entry {entry:?} must be element or Type.element, top-level elements only (SRV-073)"
                    ));
                }
            }
        }
        Ok(elements)
    }

    /// Whether any element was requested.
    pub fn is_empty(&self) -> bool {
        self.every_type.is_empty() && self.per_type.is_empty()
    }

    fn keeps(&self, ty: &str, key: &str) -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        let named = |list: &[String]| list.iter().any(|e| element_matches(e, key));
        let mandatory =
            MANDATORY.iter().find(|(t, _)| *t == ty).is_some_and(|(_, m)| m.iter().any(|e| element_matches(e, key)));
        mandatory || named(&self.every_type) || self.per_type.get(ty).is_some_and(|l| named(l))
    }

    /// Trims `resource` in place; tags it SUBSETTED when anything was removed.
    pub fn apply(&self, resource: &mut Value) {
        let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(obj) = resource.as_object_mut() else { return };
        let before = obj.len();
        obj.retain(|k, _| self.keeps(&ty, k));
        if obj.len() == before {
            return;
        }
        let meta = obj.entry("meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            let tags = meta.entry("tag").or_insert_with(|| json!([]));
            if let Some(tags) = tags.as_array_mut() {
                // `system` and `code` only: conformance suites compare the tag object exactly.
                tags.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
            }
        }
    }
}

/// `medication[x]` or `medication` matches `medicationCodeableConcept`.
fn element_matches(requested: &str, key: &str) -> bool {
    let stem = requested.strip_suffix("[x]").unwrap_or(requested);
    key == requested
        || (key.len() > stem.len()
            && key.starts_with(stem)
            && key.as_bytes()[stem.len()].is_ascii_uppercase()
            && (requested.ends_with("[x]") || !key[stem.len()..].is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_requested_and_mandatory_elements_and_tags() {
        let e = Elements::parse(&["Observation.effective".into(), "subject".into()]).unwrap();
        let mut obs = json!({"resourceType": "Observation", "id": "1", "meta": {"lastUpdated": "x"},
            "status": "final", "code": {}, "subject": {}, "effectiveDateTime": "d", "valueQuantity": {}});
        e.apply(&mut obs);
        let keys: Vec<_> = obs.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, vec!["resourceType", "id", "meta", "status", "code", "subject", "effectiveDateTime"]);
        assert_eq!(obs["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn the_subsetted_tag_is_system_and_code_only() {
        // SRV-075: the tag object is compared exactly by server test suites.
        let e = Elements::parse(&["gender".into()]).unwrap();
        let mut p = json!({"resourceType": "Patient", "id": "1", "gender": "f", "birthDate": "2000-01-01"});
        e.apply(&mut p);
        assert_eq!(p["meta"]["tag"], json!([{"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}]));
    }

    #[test]
    fn untouched_resources_are_not_tagged() {
        let e = Elements::parse(&["gender".into()]).unwrap();
        let mut p = json!({"resourceType": "Patient", "id": "1", "gender": "f"});
        e.apply(&mut p);
        assert!(p.get("meta").is_none());
    }

    #[test]
    fn nested_paths_are_rejected() {
        assert!(Elements::parse(&["Patient.name.family".into()]).is_err());
        assert!(Elements::parse(&["".into()]).is_err());
    }
}
