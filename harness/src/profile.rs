//! Client profiles (`--client-profile FILE`): what a client under test says it
//! supports. A case that needs something the profile does not claim is not
//! run; it is `not_applicable`, naming what it needs, and counted apart from
//! pass, warn and fail. Without a profile every capability is claimed.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::scenario::{Case, JwksMode};
use bulkmock_server::faults::Fault;
use bulkmock_server::faults::model::ManifestVariant;
use bulkmock_server::quirks::Quirk;

/// Kick-off parameters a profile can claim, as the guide names them.
pub const PARAMETERS: &[&str] = &[
    "_type",
    "_since",
    "_until",
    "_typeFilter",
    "_elements",
    "_outputFormat",
    "patient",
    "includeAssociatedData",
    "organizeOutputBy",
    "allowPartialManifests",
];

/// What a client supports. Every list defaults to everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientProfile {
    /// A name for reports (`smart-fetch 1.0.3`).
    #[serde(default)]
    pub name: String,
    /// Export levels: `system`, `patient`, `group`.
    #[serde(default = "all_levels")]
    pub levels: Vec<String>,
    /// Kick-off methods: `GET`, `POST`.
    #[serde(default = "all_methods")]
    pub kickoff: Vec<String>,
    /// Kick-off parameters (see [`PARAMETERS`]).
    #[serde(default = "all_parameters")]
    pub parameters: Vec<String>,
    /// `Prefer` options beyond `respond-async`: `separate-export-status`.
    #[serde(default = "all_prefer")]
    pub prefer: Vec<String>,
    /// `[incremental]` cases: runs again on its own output folder with `_since`.
    #[serde(default = "yes")]
    pub incremental: bool,
    /// Servers that speak HTTPS only (`tls = true`), with the case's CA.
    #[serde(default = "yes")]
    pub https: bool,
    /// Registration by JWKS URL (`jwks = "url"`).
    #[serde(default = "yes")]
    pub jwks_url: bool,
    /// Manifest shapes read: `v2` (also v3's), `v4-ballot`.
    #[serde(default = "all_manifests")]
    pub manifests: Vec<String>,
    /// Multiplies every case's `max_seconds` (a `--time-scale` given on the command line wins).
    #[serde(default = "one")]
    pub time_scale: f64,
}

fn all_levels() -> Vec<String> {
    ["system", "patient", "group"].map(String::from).to_vec()
}
fn all_methods() -> Vec<String> {
    ["GET", "POST"].map(String::from).to_vec()
}
fn all_parameters() -> Vec<String> {
    PARAMETERS.iter().map(|p| p.to_string()).collect()
}
fn all_prefer() -> Vec<String> {
    vec!["separate-export-status".into()]
}
fn all_manifests() -> Vec<String> {
    ["v2", "v4-ballot"].map(String::from).to_vec()
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}

impl Default for ClientProfile {
    /// Claims everything: every case applies.
    fn default() -> Self {
        toml::from_str("").expect("an empty profile claims everything")
    }
}

/// A profile that could not be read, with where.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ProfileError {
    /// The profile file.
    pub file: String,
    /// The line, when known.
    pub line: Option<usize>,
    /// What was wrong.
    pub message: String,
}

impl ClientProfile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<ClientProfile, ProfileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
            file: file.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text).map_err(|(line, message)| ProfileError { file, line, message })
    }

    /// Parses and checks a profile's text; errors carry a 1-based line when known.
    pub fn parse(text: &str) -> Result<ClientProfile, (Option<usize>, String)> {
        let line_of = |key: &str| text.lines().position(|l| l.trim_start().starts_with(key)).map(|n| n + 1);
        let profile: ClientProfile = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            // An unknown key is reported on the whole table: name its own line.
            let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next());
            let line = unknown
                .and_then(&line_of)
                .or_else(|| e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1)));
            (line, message)
        })?;
        let lists: [(&str, &[String], &[&str]); 5] = [
            ("levels", &profile.levels, &["system", "patient", "group"]),
            ("kickoff", &profile.kickoff, &["GET", "POST"]),
            ("parameters", &profile.parameters, PARAMETERS),
            ("prefer", &profile.prefer, &["separate-export-status"]),
            ("manifests", &profile.manifests, &["v2", "v4-ballot"]),
        ];
        for (key, values, known) in lists {
            if let Some(bad) = values.iter().find(|v| !known.contains(&v.as_str())) {
                return Err((line_of(key), format!("`{key}`: {bad:?} is not one of {}", known.join(", "))));
            }
        }
        if !(profile.time_scale > 0.0 && profile.time_scale <= 100.0) {
            return Err((line_of("time_scale"), "`time_scale` must be above 0 and at most 100".into()));
        }
        Ok(profile)
    }

    /// What `case` needs that this profile does not claim (empty: the case applies).
    pub fn unsupported(&self, case: &Case) -> Vec<String> {
        let claims = |list: &[String], item: &str| list.iter().any(|x| x == item);
        needs(case)
            .into_iter()
            .filter(|need| match need {
                Need::Level(l) => !claims(&self.levels, l),
                Need::Method(m) => !claims(&self.kickoff, m),
                Need::Parameter(p) => !claims(&self.parameters, p),
                Need::Prefer(p) => !claims(&self.prefer, p),
                Need::Incremental => !self.incremental,
                Need::Https => !self.https,
                Need::JwksUrl => !self.jwks_url,
                Need::Manifest(m) => !claims(&self.manifests, m),
            })
            .map(|need| need.to_string())
            .collect()
    }
}

/// One thing a case needs of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// An export level.
    Level(&'static str),
    /// A kick-off method.
    Method(&'static str),
    /// A kick-off parameter.
    Parameter(&'static str),
    /// A `Prefer` option.
    Prefer(&'static str),
    /// Incremental runs.
    Incremental,
    /// HTTPS.
    Https,
    /// Registration by JWKS URL.
    JwksUrl,
    /// A manifest shape.
    Manifest(&'static str),
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Level(l) => write!(f, "{l}-level export"),
            Need::Method(m) => write!(f, "{m} kick-off"),
            Need::Parameter(p) => write!(f, "the {p} parameter"),
            Need::Prefer(p) => write!(f, "Prefer: {p}"),
            Need::Incremental => write!(f, "incremental runs on its own output folder"),
            Need::Https => write!(f, "HTTPS with the case's CA certificate"),
            Need::JwksUrl => write!(f, "registration by JWKS URL"),
            Need::Manifest(m) => write!(f, "{m} manifests"),
        }
    }
}

/// Everything `case` asks of a client.
pub fn needs(case: &Case) -> Vec<Need> {
    let s = &case.scenario;
    let c = &s.client;
    let mut out = vec![Need::Level(c.level.as_str())];
    if c.kickoff_method() == "POST" {
        out.push(Need::Method("POST"));
    }
    let parameters = [
        ("_type", !c.types.is_empty()),
        ("_since", c.since.is_some()),
        ("_until", c.until.is_some()),
        ("_typeFilter", !c.type_filters.is_empty()),
        ("_elements", !c.elements.is_empty()),
        ("_outputFormat", c.output_format.is_some()),
        ("patient", !c.patients.is_empty()),
        ("includeAssociatedData", !c.include_associated_data.is_empty()),
        ("organizeOutputBy", c.organize_output_by.is_some()),
        ("allowPartialManifests", c.allow_partial_manifests),
    ];
    out.extend(parameters.into_iter().filter(|(_, asked)| *asked).map(|(p, _)| Need::Parameter(p)));
    if c.separate_export_status {
        out.push(Need::Prefer("separate-export-status"));
    }
    if s.incremental.is_some() {
        out.push(Need::Incremental);
    }
    if s.server.tls {
        out.push(Need::Https);
    }
    if c.jwks == JwksMode::Url {
        out.push(Need::JwksUrl);
    }
    let v4_fault =
        s.faults.iter().any(|r| matches!(r.fault, Fault::Manifest { variant: ManifestVariant::V4Ballot, .. }));
    if v4_fault || s.server.quirks.has(Quirk::V4BallotManifest) {
        out.push(Need::Manifest("v4-ballot"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(client: &str) -> Case {
        let text = format!("title = \"t\"\n[client]\n{client}\n");
        let mut file = crate::scenario::parse(&text, Path::new("scenarios/t/case.toml")).unwrap();
        file.cases.remove(0)
    }

    #[test]
    fn a_case_needing_what_the_profile_lacks_names_it() {
        let profile = ClientProfile::parse(
            "levels = [\"system\", \"group\"]\nkickoff = [\"GET\"]\nparameters = [\"_type\", \"_since\"]\n",
        )
        .unwrap();
        assert!(profile.unsupported(&case("level = \"system\"\ntypes = [\"Patient\"]")).is_empty());
        assert_eq!(
            profile.unsupported(&case("level = \"patient\"\npost = true\nuntil = \"2020-01-01T00:00:00Z\"")),
            ["patient-level export", "POST kick-off", "the _until parameter"]
        );
        assert!(ClientProfile::default().unsupported(&case("level = \"patient\"\npost = true")).is_empty());
    }

    #[test]
    fn bad_profiles_say_what_and_where() {
        let (line, message) =
            ClientProfile::parse("name = \"x\"\nlevels = [\"system\", \"everything\"]\n").unwrap_err();
        assert_eq!(line, Some(2));
        assert!(message.contains("\"everything\" is not one of system, patient, group"), "{message}");
        let (line, message) = ClientProfile::parse("name = \"x\"\nspeed = 3\n").unwrap_err();
        assert_eq!(line, Some(2));
        assert!(message.contains("unknown field `speed`"), "{message}");
        assert!(ClientProfile::parse("time_scale = 0\n").unwrap_err().1.contains("time_scale"));
    }
}
