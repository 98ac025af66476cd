//! What to export, and how a request becomes a kick-off (CLI-040..051).

use serde_json::{Value, json};

/// The export level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`.
    System,
    /// `[base]/Patient/$export`.
    Patient,
    /// `[base]/Group/[id]/$export`.
    Group(String),
}

/// What to export: every kick-off parameter of the guide.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The level.
    pub level: Level,
    /// `_type` values (sent as repeated parameters, CLI-044).
    pub types: Vec<String>,
    /// `_since`, a FHIR instant.
    pub since: Option<String>,
    /// `_until`, a FHIR instant.
    pub until: Option<String>,
    /// `_typeFilter` queries, one per parameter (CLI-047).
    pub type_filters: Vec<String>,
    /// `_elements`.
    pub elements: Vec<String>,
    /// `_outputFormat`.
    pub output_format: Option<String>,
    /// `patient` references (`Patient/123`); only sent by POST (CLI-046).
    pub patients: Vec<String>,
    /// `includeAssociatedData` codes.
    pub include_associated_data: Vec<String>,
    /// `organizeOutputBy`.
    pub organize_output_by: Option<String>,
    /// `allowPartialManifests=true`: pages of the manifest arrive while the job runs (CLI-068).
    pub allow_partial_manifests: bool,
    /// Ask for `Prefer: separate-export-status` (CLI-042).
    pub separate_export_status: bool,
    /// Kick off with POST and a Parameters body instead of GET.
    pub post: bool,
}

/// The NDJSON output format (the default of every Bulk Data server, SRV-050).
pub const NDJSON: &str = "application/fhir+ndjson";

impl ExportRequest {
    /// A request for `level` with no parameters.
    pub fn new(level: Level) -> Self {
        ExportRequest {
            level,
            types: Vec::new(),
            since: None,
            until: None,
            type_filters: Vec::new(),
            elements: Vec::new(),
            output_format: None,
            patients: Vec::new(),
            include_associated_data: Vec::new(),
            organize_output_by: None,
            allow_partial_manifests: false,
            separate_export_status: false,
            post: false,
        }
    }

    /// The operation's path under the FHIR base.
    pub(crate) fn path(&self) -> String {
        match &self.level {
            Level::System => "$export".to_string(),
            Level::Patient => "Patient/$export".to_string(),
            Level::Group(id) => format!("Group/{id}/$export"),
        }
    }

    /// Whether the kick-off must be a POST (`patient` exists only in Parameters).
    pub(crate) fn needs_post(&self) -> bool {
        self.post || !self.patients.is_empty()
    }

    /// The `Prefer` header (CLI-041, CLI-042).
    pub(crate) fn prefer(&self) -> &'static str {
        if self.separate_export_status { "respond-async, separate-export-status" } else { "respond-async" }
    }

    /// The `_outputFormat` sent: the asked one, else NDJSON. Always sent, for
    /// servers that require it (quirk `output-format-required`; CLI-051).
    fn output_format(&self) -> String {
        self.output_format.clone().unwrap_or_else(|| NDJSON.to_string())
    }

    /// Query pairs for a GET kick-off, repeated rather than comma-joined.
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("_outputFormat", self.output_format())];
        out.extend(self.types.iter().map(|t| ("_type", t.clone())));
        out.extend(self.since.iter().map(|s| ("_since", s.clone())));
        out.extend(self.until.iter().map(|s| ("_until", s.clone())));
        out.extend(self.type_filters.iter().map(|s| ("_typeFilter", s.clone())));
        out.extend(self.elements.iter().map(|s| ("_elements", s.clone())));
        out.extend(self.include_associated_data.iter().map(|s| ("includeAssociatedData", s.clone())));
        out.extend(self.organize_output_by.iter().map(|s| ("organizeOutputBy", s.clone())));
        if self.allow_partial_manifests {
            out.push(("allowPartialManifests", "true".into()));
        }
        out
    }

    /// The `Parameters` body of a POST kick-off, each value with its FHIR type (CLI-045).
    pub(crate) fn parameters(&self) -> Value {
        let string = |name: &str, v: &String| json!({"name": name, "valueString": v});
        let mut parameter: Vec<Value> = vec![string("_outputFormat", &self.output_format())];
        parameter.extend(self.types.iter().map(|v| string("_type", v)));
        parameter.extend(self.since.iter().map(|v| json!({"name": "_since", "valueInstant": v})));
        parameter.extend(self.until.iter().map(|v| json!({"name": "_until", "valueInstant": v})));
        parameter.extend(self.type_filters.iter().map(|v| string("_typeFilter", v)));
        parameter.extend(self.elements.iter().map(|v| string("_elements", v)));
        parameter.extend(self.patients.iter().map(|v| json!({"name": "patient", "valueReference": {"reference": v}})));
        parameter.extend(
            self.include_associated_data.iter().map(|v| json!({"name": "includeAssociatedData", "valueCode": v})),
        );
        parameter.extend(self.organize_output_by.iter().map(|v| string("organizeOutputBy", v)));
        if self.allow_partial_manifests {
            parameter.push(json!({"name": "allowPartialManifests", "valueBoolean": true}));
        }
        json!({"resourceType": "Parameters", "parameter": parameter})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_repeat_and_carry_their_fhir_types() {
        let mut r = ExportRequest::new(Level::Group("g1".into()));
        r.types = vec!["Patient".into(), "Observation".into()];
        r.since = Some("2024-01-01T00:00:00Z".into());
        r.patients = vec!["Patient/p1".into()];
        r.allow_partial_manifests = true;
        assert_eq!(r.path(), "Group/g1/$export");
        assert!(r.needs_post(), "patient is only a POST parameter");
        let q = r.query();
        assert_eq!(q.iter().filter(|(k, _)| *k == "_type").count(), 2, "repeated, not comma-joined");
        let p = r.parameters();
        let params = p["parameter"].as_array().unwrap();
        assert!(params.iter().any(|x| x["name"] == "_since" && x["valueInstant"] == "2024-01-01T00:00:00Z"));
        assert!(params.iter().any(|x| x["valueReference"]["reference"] == "Patient/p1"));
        assert!(params.iter().any(|x| x["name"] == "allowPartialManifests" && x["valueBoolean"] == true));
    }
}
