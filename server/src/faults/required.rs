//! The top-level elements a resource must carry to meet its profile: US Core
//! 6.1 where the type has a US Core profile, base FHIR R4 otherwise. The
//! synthetic population carries all of them (`server/tests/us_core.rs`); the
//! `content` fault's `missing_required` mutation removes them, as data that
//! strict downstream validation rejects.

/// `(resource type, required elements)`; a choice element is named as served
/// (`medicationCodeableConcept`, `occurrenceDateTime`).
pub const REQUIRED: &[(&str, &[&str])] = &[
    ("Patient", &["identifier", "name", "gender"]),
    ("Encounter", &["status", "class", "type", "subject"]),
    ("Condition", &["category", "code", "subject"]),
    ("Observation", &["status", "category", "code", "subject"]),
    ("Procedure", &["status", "code", "subject"]),
    ("MedicationRequest", &["status", "intent", "medicationCodeableConcept", "subject"]),
    ("Immunization", &["status", "vaccineCode", "patient", "occurrenceDateTime"]),
    ("AllergyIntolerance", &["code", "patient"]),
    ("DiagnosticReport", &["status", "category", "code", "subject"]),
    ("DocumentReference", &["status", "type", "category", "subject", "content"]),
    ("CarePlan", &["text", "status", "intent", "category", "subject"]),
    ("CareTeam", &["subject", "participant"]),
    ("Coverage", &["status", "beneficiary", "relationship", "payor"]),
    ("Device", &["type", "patient"]),
    ("Provenance", &["target", "recorded", "agent"]),
    ("Practitioner", &["identifier", "name"]),
    ("Organization", &["active", "name"]),
    ("Location", &["name"]),
    // No US Core profile: base R4 cardinalities.
    ("Claim", &["status", "type", "use", "patient", "created", "provider", "priority", "insurance"]),
    (
        "ExplanationOfBenefit",
        &["status", "type", "use", "patient", "created", "insurer", "provider", "outcome", "insurance"],
    ),
    ("Group", &["type", "actual"]),
];

/// The required elements of `resource_type` (empty for a type not in the table).
pub fn required_elements(resource_type: &str) -> &'static [&'static str] {
    REQUIRED.iter().find(|(ty, _)| *ty == resource_type).map_or(&[], |(_, elements)| elements)
}
