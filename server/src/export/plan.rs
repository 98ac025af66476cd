//! From validated parameters to an [`ExportPlan`]: the patient set, the types,
//! the filters, and the list of files with the units each file covers.
//!
//! Planning is cheap at any population size: a file is a range of *units*
//! (patients for compartment types, resource indices otherwise), and nothing
//! is generated until the job counts or a client downloads.

use std::collections::HashMap;
use std::ops::Range;

use bulkmock_wire::IssueType;

use super::elements::Elements;
use super::params::{ExportParams, Problem};
use super::type_filter::TypeQuery;
use crate::auth::scopes::Grant;
use crate::data::{DataSource, PatientSet, TypeIdx};
use crate::quirks::{Quirk, Quirks};

/// The export level (SRV-020).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`.
    System,
    /// `[base]/Patient/$export`.
    Patient,
    /// `[base]/Group/[id]/$export`.
    Group(String),
}

/// Which Provenance resources an export includes (SRV-083..086).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvenanceRule {
    /// Every Provenance in scope (the default rule, SRV-086).
    All,
    /// Provenance targeting an exported resource (`RelevantProvenanceResources`).
    Relevant,
    /// Only the newest Provenance of each exported resource (`LatestProvenanceResources`).
    Latest,
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Resources of one type.
    Output(TypeIdx),
    /// Transaction Bundles deleting resources of one type (SRV-170..174).
    Deleted(TypeIdx),
    /// Patient resource blocks (`organizeOutputBy=Patient`, SRV-096).
    Organized,
}

/// One output or deleted file: a kind over a range of units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// What it holds.
    pub kind: FileKind,
    /// Patient ordinals (compartment types, organised files) or resource indices.
    pub units: Range<u64>,
}

/// Everything needed to produce an export's files.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    /// The level.
    pub level: Level,
    /// Patients in scope (all patients for system level).
    pub patients: PatientSet,
    /// Exported types, in output order.
    pub types: Vec<TypeIdx>,
    /// The Provenance rule, when Provenance is exported.
    pub provenance: ProvenanceRule,
    /// `includeAssociatedData` values as the client sent them (what it asked
    /// for, whether supported or not).
    pub include_associated: Vec<String>,
    /// `_since`, exclusive (E-19).
    pub since: Option<i64>,
    /// `_until`, inclusive, so consecutive windows neither overlap nor leave gaps.
    pub until: Option<i64>,
    /// `_typeFilter` queries per type, OR-ed.
    pub filters: HashMap<TypeIdx, Vec<TypeQuery>>,
    /// Search constraints of the token's scopes per type, OR-ed (and AND-ed with `filters`).
    pub scope_filters: HashMap<TypeIdx, Vec<TypeQuery>>,
    /// `_elements`.
    pub elements: Option<Elements>,
    /// `organizeOutputBy=Patient`.
    pub organized: bool,
    /// `allowPartialManifests=true`.
    pub allow_partial_manifests: bool,
    /// Output files, then deleted files.
    pub files: Vec<FileSpec>,
    /// Problems ignored under `handling=lenient`, for the `error` file (SRV-046).
    pub notes: Vec<Problem>,
    /// `_typeFilter` queries asked for and ignored (quirk `ignores-type-filter`):
    /// what the client wanted, so a harness can tell what it got beyond that (CLI-048).
    pub ignored_filters: HashMap<TypeIdx, Vec<TypeQuery>>,
    /// The quirks in force when the job started (status answers and manifests follow them).
    pub quirks: Quirks,
    /// POST parameters given as one comma-joined value instead of repeated entries (CLI-045).
    pub comma_joined: Vec<String>,
}

/// The NDJSON spellings of `_outputFormat` (SRV-051).
const NDJSON_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Why an export cannot be planned at all, whatever the handling preference.
#[derive(Debug)]
pub enum PlanError {
    /// `Group/[id]` does not exist.
    UnknownGroup(String),
    /// Parameter problems (strict handling).
    Invalid(Vec<Problem>),
    /// The token's scopes do not cover what was asked (SRV-014, AUTH-069).
    Forbidden(String),
}

/// Plans an export. With `lenient`, parameter problems are dropped into
/// `notes`; otherwise any problem fails the kick-off. `quirks` bend it:
/// `no-until` makes `_until` an unsupported parameter (SRV-064),
/// `ignores-type-filter` keeps `_typeFilter` aside unapplied (SRV-093, CLI-048),
/// `omits-unauthorised-types` drops `_type` values the token does not cover
/// instead of answering 403 (SRV-014).
#[allow(clippy::too_many_arguments)]
pub fn plan(
    source: &dyn DataSource,
    level: Level,
    params: ExportParams,
    mut problems: Vec<Problem>,
    lenient: bool,
    resources_per_file: u64,
    now: i64,
    grant: Option<&Grant>,
    quirks: &Quirks,
) -> Result<ExportPlan, PlanError> {
    let mut params = params;
    if quirks.has(Quirk::NoUntil) && params.until.take().is_some() {
        problems.push(Problem::new(
            "_until",
            IssueType::NotSupported,
            "this server does not support _until (SRV-064); export without it, or send Prefer: handling=lenient to have it ignored",
        ));
    }
    let readable = |ty: TypeIdx| grant.is_none_or(|g| g.can_read(&source.types()[ty].name));
    if let (Level::Group(_), Some(g)) = (&level, grant)
        && !g.can_read("Group")
    {
        return Err(PlanError::Forbidden(
            "a Group export needs read access to Group (e.g. system/Group.rs) (AUTH-069)".into(),
        ));
    }
    let mut patients = match &level {
        Level::System | Level::Patient => PatientSet::all(source.patient_count()),
        Level::Group(id) => source.group(id).ok_or_else(|| PlanError::UnknownGroup(id.clone()))?.members.clone(),
    };

    if let Some(format) = &params.output_format
        && !NDJSON_FORMATS.contains(&format.as_str())
    {
        problems.push(Problem::new(
            "_outputFormat",
            IssueType::NotSupported,
            format!("_outputFormat {format:?} is not supported; use application/fhir+ndjson (SRV-051)"),
        ));
    }
    let (since, until) = check_window(&params, now, &mut problems);

    if !params.patients.is_empty()
        && let Some(subset) = restrict_patients(source, &level, &patients, &params.patients, &mut problems)
    {
        patients = subset;
    }

    let compartment_only = level != Level::System;
    let mut types = select_types(source, params.types.as_deref(), compartment_only, &mut problems);
    if params.types.is_some() && quirks.has(Quirk::OmitsUnauthorisedTypes) {
        types.retain(|&t| readable(t));
    } else if params.types.is_some() {
        let denied: Vec<&str> =
            types.iter().filter(|&&t| !readable(t)).map(|&t| source.types()[t].name.as_str()).collect();
        if !denied.is_empty() {
            return Err(PlanError::Forbidden(format!(
                "the access token's scopes do not cover _type {} (SRV-014); ask for e.g. system/{}.rs",
                denied.join(", "),
                denied[0]
            )));
        }
    } else {
        types.retain(|&t| readable(t)); // SRV-066: everything within the client's authorization
        if types.is_empty() {
            return Err(PlanError::Forbidden("the access token's scopes cover no type this export can hold".into()));
        }
    }
    let provenance = provenance_rule(source, &params, &mut types, compartment_only, &mut problems);
    if let Some(p) = source.type_index("Provenance")
        && types.contains(&p)
        && !readable(p)
    {
        return Err(PlanError::Forbidden(
            "includeAssociatedData adds Provenance, which the access token's scopes do not cover".into(),
        ));
    }
    let scope_filters: HashMap<TypeIdx, Vec<TypeQuery>> = match grant {
        None => HashMap::new(),
        Some(g) => types.iter().filter_map(|&t| g.constraints(&source.types()[t].name).map(|c| (t, c))).collect(),
    };
    let mut filters = parse_filters(source, &params.type_filters, &mut problems);
    let ignored_filters =
        if quirks.has(Quirk::IgnoresTypeFilter) { std::mem::take(&mut filters) } else { HashMap::new() };
    let elements = match Elements::parse(&params.elements) {
        Ok(e) if e.is_empty() => None,
        Ok(e) => Some(e),
        Err(message) => {
            problems.push(Problem::new("_elements", IssueType::Invalid, message));
            None
        }
    };
    let organized = match params.organize_output_by.as_deref() {
        None => false,
        Some("Patient") => true,
        Some(other) => {
            problems.push(Problem::new(
                "organizeOutputBy",
                IssueType::NotSupported,
                format!("organizeOutputBy={other} is not supported; only Patient is (SRV-098)"),
            ));
            false
        }
    };

    if !problems.is_empty() && !lenient {
        return Err(PlanError::Invalid(problems));
    }
    let mut plan = ExportPlan {
        level,
        patients,
        types,
        provenance,
        include_associated: params.include_associated.clone(),
        since,
        until,
        filters,
        scope_filters,
        elements,
        organized,
        allow_partial_manifests: params.allow_partial_manifests,
        comma_joined: params.comma_joined.clone(),
        files: Vec::new(),
        notes: problems,
        ignored_filters,
        quirks: quirks.clone(),
    };
    plan.files = split_into_files(source, &plan, resources_per_file.max(1));
    Ok(plan)
}

fn check_window(params: &ExportParams, now: i64, problems: &mut Vec<Problem>) -> (Option<i64>, Option<i64>) {
    let mut since = params.since;
    let mut until = params.until;
    if let Some(s) = since
        && s > now
    {
        problems.push(Problem::new(
            "_since",
            IssueType::Invalid,
            format!("_since {} is in the future (server time {}) (SRV-060)", instant(s), instant(now)),
        ));
        since = None;
    }
    if let (Some(s), Some(u)) = (since, until)
        && u <= s
    {
        problems.push(Problem::new(
            "_until",
            IssueType::Invalid,
            format!("_until {} must be later than _since {}", instant(u), instant(s)),
        ));
        until = None;
    }
    (since, until)
}

fn instant(secs: i64) -> String {
    crate::data::clock::instant_string(secs)
}

/// Resolves `patient` references within the level's patient set (SRV-077..081).
fn restrict_patients(
    source: &dyn DataSource,
    level: &Level,
    in_scope: &PatientSet,
    references: &[String],
    problems: &mut Vec<Problem>,
) -> Option<PatientSet> {
    if *level == Level::System {
        problems.push(Problem::new(
            "patient",
            IssueType::NotSupported,
            "the patient parameter applies to Patient and Group exports only, not to system-level $export (SRV-077)",
        ));
        return None;
    }
    let mut chosen = Vec::new();
    for reference in references {
        let id = reference.trim_end_matches('/').rsplit_once("Patient/").map(|(_, id)| id);
        let index = id.filter(|id| !id.contains('/')).and_then(|id| source.patient_index(id));
        match index {
            None => problems.push(Problem::new(
                "patient",
                IssueType::NotFound,
                format!(
                    "patient {reference:?} does not exist (expected a reference like Patient/{}) (SRV-079)",
                    source.patient_id(0)
                ),
            )),
            Some(p) if !in_scope.contains(p) => problems.push(Problem::new(
                "patient",
                IssueType::Invalid,
                format!("patient {reference:?} is not a member of the group (SRV-079)"),
            )),
            Some(p) => chosen.push(p),
        }
    }
    Some(PatientSet::list(chosen))
}

fn select_types(
    source: &dyn DataSource,
    requested: Option<&[String]>,
    compartment_only: bool,
    problems: &mut Vec<Problem>,
) -> Vec<TypeIdx> {
    let allowed = |ty: TypeIdx| !compartment_only || source.types()[ty].in_patient_compartment;
    let Some(requested) = requested else {
        // SRV-066: every supported type within scope; Provenance follows its own rule.
        return (0..source.types().len()).filter(|&t| allowed(t)).collect();
    };
    let mut chosen = Vec::new();
    for name in requested {
        match source.type_index(name) {
            None => problems.push(Problem::new(
                "_type",
                IssueType::NotSupported,
                format!(
                    "_type {name} is not a resource type this server exports; supported: {} (SRV-070)",
                    source.types().iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )),
            Some(t) if !allowed(t) => problems.push(Problem::new(
                "_type",
                IssueType::NotSupported,
                format!(
                    "_type {name} is outside the Patient compartment and cannot be exported at this level (SRV-070)"
                ),
            )),
            Some(t) => chosen.push(t),
        }
    }
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

fn provenance_rule(
    source: &dyn DataSource,
    params: &ExportParams,
    types: &mut Vec<TypeIdx>,
    compartment_only: bool,
    problems: &mut Vec<Problem>,
) -> ProvenanceRule {
    let (mut relevant, mut latest) = (false, false);
    for value in &params.include_associated {
        match value.as_str() {
            "RelevantProvenanceResources" => relevant = true,
            "LatestProvenanceResources" => latest = true,
            other => problems.push(Problem::new(
                "includeAssociatedData",
                IssueType::NotSupported,
                format!(
                    "includeAssociatedData {other:?} is not supported; supported: LatestProvenanceResources, \
                     RelevantProvenanceResources (SRV-085)"
                ),
            )),
        }
    }
    let Some(provenance) = source.type_index("Provenance") else {
        return ProvenanceRule::All;
    };
    if compartment_only && !source.types()[provenance].in_patient_compartment {
        return ProvenanceRule::All;
    }
    let explicit = types.contains(&provenance);
    if (relevant || latest) && !explicit {
        types.push(provenance);
        types.sort_unstable();
    }
    // SRV-084: with conflicting values the least restrictive wins.
    match (explicit, relevant, latest) {
        (true, true, _) | (true, false, false) => ProvenanceRule::All,
        (false, true, _) => ProvenanceRule::Relevant,
        (_, false, true) => ProvenanceRule::Latest,
        (false, false, false) => ProvenanceRule::All,
    }
}

fn parse_filters(
    source: &dyn DataSource,
    queries: &[String],
    problems: &mut Vec<Problem>,
) -> HashMap<TypeIdx, Vec<TypeQuery>> {
    let mut filters: HashMap<TypeIdx, Vec<TypeQuery>> = HashMap::new();
    for query in queries {
        match TypeQuery::parse(query) {
            Err(message) => problems.push(Problem::new("_typeFilter", IssueType::NotSupported, message)),
            Ok(q) => match source.type_index(&q.resource_type) {
                None => problems.push(Problem::new(
                    "_typeFilter",
                    IssueType::NotSupported,
                    format!("_typeFilter {query:?} names {}, which this server does not export", q.resource_type),
                )),
                Some(t) => filters.entry(t).or_default().push(q),
            },
        }
    }
    filters
}

/// Average resources of `ty` per patient over a sample of the set.
fn per_patient(source: &dyn DataSource, ty: TypeIdx, patients: &PatientSet) -> u64 {
    let sample = patients.len().min(64);
    if sample == 0 {
        return 1;
    }
    let step = (patients.len() / sample).max(1);
    let total: u64 = (0..sample).map(|i| source.patient_resources(ty, patients.get(i * step)).count() as u64).sum();
    total.div_ceil(sample).max(1)
}

fn chunks(kind: FileKind, units: u64, per_file: u64, out: &mut Vec<FileSpec>) {
    let mut start = 0;
    while start < units {
        let end = (start + per_file).min(units);
        out.push(FileSpec { kind, units: start..end });
        start = end;
    }
}

fn split_into_files(source: &dyn DataSource, plan: &ExportPlan, resources_per_file: u64) -> Vec<FileSpec> {
    let mut files = Vec::new();
    let members = plan.patients.len();
    let units_of = |ty: TypeIdx| -> (u64, u64) {
        if source.types()[ty].in_patient_compartment {
            (members, (resources_per_file / per_patient(source, ty, &plan.patients)).max(1))
        } else {
            (source.standalone_count(ty), resources_per_file)
        }
    };
    if plan.organized {
        let per_block: u64 = plan
            .types
            .iter()
            .filter(|&&t| source.types()[t].in_patient_compartment)
            .map(|&t| per_patient(source, t, &plan.patients))
            .sum::<u64>()
            + 1;
        chunks(FileKind::Organized, members, (resources_per_file / per_block).max(1), &mut files);
    } else {
        for &ty in &plan.types {
            let (units, per_file) = units_of(ty);
            chunks(FileKind::Output(ty), units, per_file, &mut files);
        }
    }
    if plan.since.is_some() {
        for &ty in &plan.types {
            let (units, per_file) = units_of(ty);
            chunks(FileKind::Deleted(ty), units, per_file, &mut files);
        }
    }
    files
}
