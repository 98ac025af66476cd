//! The output on disk against the export the job produced. Each finding cites
//! the requirements of its own diagnosis ([`Finding::miss_at`]): a cut file
//! kept is CLI-092, a gzip body kept undecoded CLI-084, deleted resources
//! added CLI-087, never the check's whole list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use super::wire::{Route, file_name, route, whole_body};
use super::{Check, Evidence, Finding, Input, Level};
use crate::scenario::{ExpectedOutcome, OutputExpectation};
use crate::verify::{OutputReport, UNPARSEABLE};
use bulkmock_server::Exchange;

/// The family's checks.
pub const CHECKS: &[Check] = &[
    Check {
        id: "output.matches_export",
        title: "a client that reports success holds exactly the exported resources (equal by value): nothing missing, extra, duplicated or corrupted",
        requirements: &["CLI-092", "CLI-084", "CLI-086", "CLI-090"],
        level: Level::Must,
        always: true,
        run: matches_export,
    },
    Check {
        id: "output.decimal_precision",
        title: "decimals are kept as exported: 15.0 is not rewritten 15 (FHIR R4 datatypes: a decimal's precision is significant)",
        // No requirement of the Bulk Data list speaks of a decimal's spelling:
        // the rule is FHIR R4's own (datatypes, decimal: precision is
        // significant and should be preserved), named in the title and the
        // evidence. SHOULD: nothing is lost by value.
        requirements: &[],
        level: Level::Should,
        always: true,
        run: decimal_precision,
    },
    Check {
        id: "output.deleted_not_added",
        title: "resources listed in deleted files the client downloaded are never added",
        requirements: &["CLI-087"],
        level: Level::Must,
        always: true,
        run: deleted_not_added,
    },
    Check {
        id: "output.type_filter_ignored",
        title: "when the server ignored _typeFilter, the client filtered the extra resources out or said so",
        requirements: &["CLI-048"],
        level: Level::Should,
        always: true,
        run: type_filter_ignored,
    },
];

/// One thing wrong with the output, with the requirements it breaches.
struct Diagnosis<'a> {
    text: String,
    requirements: &'static [&'static str],
    exchanges: Vec<&'a Exchange>,
}

impl<'a> Diagnosis<'a> {
    fn new(text: String, requirements: &'static [&'static str]) -> Self {
        Diagnosis { text, requirements, exchanges: Vec::new() }
    }
}

/// `Type n (e.g. Type/id)` for each type with differences of `kind` (unparseable lines aside).
fn examples(o: &OutputReport, kind: &str) -> String {
    let by_type: Vec<String> = o
        .details
        .iter()
        .filter(|(ty, _)| *ty != UNPARSEABLE)
        .filter_map(|(ty, kinds)| kinds.get(kind).map(|d| (ty, d)))
        .map(|(ty, d)| {
            format!("{ty} {}{}", d.count, d.examples.first().map(|x| format!(" (e.g. {x})")).unwrap_or_default())
        })
        .collect();
    by_type.join(", ")
}

/// Why the output is not compared in this case, if it is not: the skip (or,
/// for a success without any export, the miss) to report instead.
fn not_compared(input: &Input) -> Option<Finding> {
    if !super::reported_data(input) {
        return Some(Finding::skip("the client did not report success"));
    }
    let expect = &input.case.scenario.expect;
    if input.job.is_none() {
        // Success without an export is no success when the case expects one.
        let wanted = expect.outcome != ExpectedOutcome::FailCleanly && expect.output == OutputExpectation::Export;
        return Some(if wanted {
            Finding::miss_at(Level::Must, &["CLI-086"], "exit 0, but no export was ever started", [])
        } else {
            Finding::skip("no export was started")
        });
    }
    if expect.output == OutputExpectation::Any {
        return Some(Finding::skip("the case does not compare the output"));
    }
    None
}

fn matches_export(input: &Input) -> Finding {
    if let Some(finding) = not_compared(input) {
        return finding;
    }
    if input.output.resources_exact() || filtered_client_side(input) {
        return Finding::Pass;
    }
    let found = diagnoses(input);
    let requirements = cited(found.iter().flat_map(|d| d.requirements.iter().copied()));
    let texts: Vec<&str> = found.iter().map(|d| d.text.as_str()).collect();
    let o = input.output;
    Finding::miss_at(
        Level::Must,
        requirements,
        format!(
            "exit {}, but the output differs from the export: {} of {} expected resources found; {}",
            input.run.exit_code.unwrap_or_default(),
            o.resources,
            o.expected_resources,
            texts.join("; ")
        ),
        found.iter().flat_map(|d| d.exchanges.iter().copied()),
    )
}

/// The output's differences from the export in words, and the requirements
/// their diagnoses cite (see `matches_export`).
pub(crate) fn differences(input: &Input) -> (String, &'static [&'static str]) {
    let found = diagnoses(input);
    let requirements = cited(found.iter().flat_map(|d| d.requirements.iter().copied()));
    let texts: Vec<&str> = found.iter().map(|d| d.text.as_str()).collect();
    (texts.join("; "), requirements)
}

/// What is wrong with the output, each with its own requirements.
fn diagnoses<'a>(input: &Input<'a>) -> Vec<Diagnosis<'a>> {
    let o = input.output;
    let mut out = Vec::new();
    if !o.gzip_undecoded.is_empty() {
        out.push(Diagnosis::new(
            format!(
                "{} files hold a gzip body kept undecoded ({}), so {} resources are missing (CLI-084)",
                o.gzip_undecoded.len(),
                o.gzip_undecoded.join(", "),
                o.missing
            ),
            &["CLI-084"],
        ));
    } else if o.missing > 0 {
        out.push(missing(input));
    }
    let incremental = !input.runs.is_empty();
    out.extend(extra(o, incremental));
    if o.duplicated > 0 {
        let text = format!(
            "{} duplicated, present more often than exported: {} (CLI-092)",
            o.duplicated,
            examples(o, "duplicated")
        );
        out.push(Diagnosis::new(text, &["CLI-092"]));
    }
    out.extend(corrupted(o, incremental));
    if o.too_large {
        out.push(Diagnosis::new("output too large to read (CLI-092)".into(), &["CLI-092"]));
    }
    out
}

/// Missing resources: after a file received cut or damaged (CLI-092), from an
/// incremental state (CLI-054), or simply never downloaded (CLI-086).
fn missing<'a>(input: &Input<'a>) -> Diagnosis<'a> {
    let o = input.output;
    let cut = cut_files(input.exchanges);
    if !cut.is_empty() {
        let names: BTreeSet<&str> = cut.iter().map(|e| file_name(e)).collect();
        let names: Vec<&str> = names.into_iter().collect();
        let text = format!(
            "{} missing after a file received cut or damaged ({}): {} (CLI-092)",
            o.missing,
            names.join(", "),
            examples(o, "missing")
        );
        return Diagnosis { text, requirements: &["CLI-092"], exchanges: cut };
    }
    if !input.runs.is_empty() {
        let text = format!(
            "{} missing from the state: changes or joined members' data never pulled: {} (CLI-054)",
            o.missing,
            examples(o, "missing")
        );
        return Diagnosis::new(text, &["CLI-054"]);
    }
    Diagnosis::new(format!("{} missing: {} (CLI-086)", o.missing, examples(o, "missing")), &["CLI-086"])
}

/// Extra resources: of members who left the Group (CLI-054), deleted (CLI-087), or never exported at all.
fn extra<'a>(o: &OutputReport, incremental: bool) -> Vec<Diagnosis<'a>> {
    let mut out = Vec::new();
    let departed = &o.departed_present;
    if departed.count > 0 {
        out.push(Diagnosis::new(
            format!(
                "{} resources of members who left the Group are still in the output (e.g. {}) (CLI-054)",
                departed.count,
                departed.examples.join(", ")
            ),
            &["CLI-054"],
        ));
    }
    if o.deleted_but_present > 0 {
        let first: Vec<&str> =
            o.deleted_present.values().filter_map(|d| d.examples.first()).map(String::as_str).collect();
        let how = if incremental { "deleted since an earlier run" } else { "listed as deleted by the export" };
        out.push(Diagnosis::new(
            format!(
                "{} resources {how} are still in the output (e.g. {}) (CLI-087)",
                o.deleted_but_present,
                first.join(", ")
            ),
            &["CLI-087"],
        ));
    }
    let other = o.extra.saturating_sub(departed.count + o.deleted_but_present);
    if other > 0 {
        out.push(Diagnosis::new(
            format!("{other} extra, never exported: {} (CLI-092)", examples(o, "extra")),
            &["CLI-092"],
        ));
    }
    out
}

/// Resources whose values differ: in an incremental state an update never
/// applied (CLI-054), else corrupted (CLI-092); lines cut or damaged (CLI-092).
fn corrupted<'a>(o: &OutputReport, incremental: bool) -> Vec<Diagnosis<'a>> {
    let broken = o.details.get(UNPARSEABLE).and_then(|k| k.get("corrupted")).map_or(0, |d| d.count);
    let differ = o.corrupted.saturating_sub(broken);
    let mut out = Vec::new();
    if differ > 0 {
        let (what, requirements): (&str, &'static [&'static str]) = if incremental {
            ("differ from the final state (an update never applied)", &["CLI-054"])
        } else {
            ("corrupted, values differ from the export", &["CLI-092"])
        };
        let cited = requirements.join(", ");
        out.push(Diagnosis::new(format!("{differ} {what}: {} ({cited})", examples(o, "corrupted")), requirements));
    }
    if broken > 0 {
        out.push(Diagnosis::new(format!("{broken} resource lines cut or damaged (CLI-092)"), &["CLI-092"]));
    }
    out
}

/// File responses that arrived cut (not sent whole: `wire::whole_body`) or with a fault that fired.
fn cut_files(exchanges: &[Exchange]) -> Vec<&Exchange> {
    exchanges
        .iter()
        .filter(|e| {
            route(e) == Some(Route::File) && matches!(e.status, 200 | 206) && (e.fault.is_some() || !whole_body(e))
        })
        .collect()
}

/// The union of requirement ids, sorted, as a `'static` slice: each distinct
/// union is allocated once for the process (a handful of ids, a few unions).
fn cited<'r>(ids: impl Iterator<Item = &'r str>) -> &'static [&'static str] {
    static UNIONS: OnceLock<Mutex<BTreeMap<Vec<String>, &'static [&'static str]>>> = OnceLock::new();
    let key: Vec<String> = ids.map(str::to_string).collect::<BTreeSet<_>>().into_iter().collect();
    let mut unions = UNIONS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    unions.entry(key).or_insert_with_key(|key| {
        let ids: Vec<&'static str> = key.iter().map(|id| &*Box::leak(id.clone().into_boxed_str())).collect();
        Box::leak(ids.into_boxed_slice())
    })
}

/// Whether the output is the export minus exactly the resources beyond an
/// ignored `_typeFilter`: a client that filtered client-side (CLI-048).
fn filtered_client_side(input: &Input) -> bool {
    let o = input.output;
    let beyond = input.job.map_or(0, |j| j.beyond_type_filter);
    beyond > 0
        && o.missing == beyond
        && o.extra == 0
        && o.duplicated == 0
        && o.corrupted == 0
        && !o.too_large
        && o.gzip_undecoded.is_empty()
}

/// SHOULD (FHIR R4 datatypes, `decimal`: precision is significant): judged
/// apart from `output.matches_export`, which passes when only spellings differ.
fn decimal_precision(input: &Input) -> Finding {
    if let Some(finding) = not_compared(input) {
        return match finding {
            Finding::MissAt { .. } => Finding::skip("no export was started"),
            other => other,
        };
    }
    let o = input.output;
    if o.decimal_resources == 0 {
        return Finding::skip("the export holds no decimal with digits after the point");
    }
    if o.precision_lost == 0 {
        return Finding::Pass;
    }
    let shown: Vec<String> = o
        .precision_examples
        .iter()
        .map(|r| format!("{} {}: {} written {}", r.resource, r.path, r.expected, r.found))
        .collect();
    Finding::miss(
        format!(
            "{} resources hold a decimal spelled with fewer digits than exported, equal by value ({}); \
             FHIR R4 (datatypes, decimal): the precision of a decimal is significant and is kept as given",
            o.precision_lost,
            shown.join("; ")
        ),
        [],
    )
}

fn type_filter_ignored(input: &Input) -> Finding {
    let beyond = input.job.map_or(0, |j| j.beyond_type_filter);
    if beyond == 0 {
        return Finding::skip("the export holds nothing beyond the _typeFilter asked for");
    }
    if input.run.exit_code != Some(0) {
        return Finding::skip("the client did not report success");
    }
    if filtered_client_side(input) {
        return Finding::Pass;
    }
    if input.run.stdout.contains("_typeFilter") || input.run.stderr.contains("_typeFilter") {
        return Finding::Pass;
    }
    Finding::Miss(Evidence {
        message: format!(
            "the server ignored _typeFilter and served {beyond} resources beyond it; the client kept them \
             without a word (no output mentions _typeFilter)"
        ),
        exchanges: Vec::new(),
    })
}

/// The deleted files the client downloaded (a 200 or 206), by the resource type they list.
fn deleted_files_read(exchanges: &[Exchange]) -> BTreeMap<&str, Vec<&Exchange>> {
    let mut read: BTreeMap<&str, Vec<&Exchange>> = BTreeMap::new();
    for e in exchanges.iter().filter(|e| route(e) == Some(Route::File) && matches!(e.status, 200 | 206)) {
        // `{i}.deleted.{Type}.ndjson`
        if let Some((_, rest)) = file_name(e).split_once(".deleted.") {
            read.entry(rest.trim_end_matches(".ndjson")).or_default().push(e);
        }
    }
    read
}

/// Blames only resources listed in a deleted file the client downloaded;
/// those of members who left a Group were never listed as deleted.
fn deleted_not_added(input: &Input) -> Finding {
    let o = input.output;
    if o.deleted.expected == 0 {
        return Finding::skip("the export deleted nothing");
    }
    if o.deleted_but_present == 0 {
        return Finding::Pass;
    }
    let read = deleted_files_read(input.exchanges);
    let (blamed, unread): (Vec<_>, Vec<_>) =
        o.deleted_present.iter().partition(|(ty, _)| read.contains_key(ty.as_str()));
    let departed = match o.departed_present.count {
        0 => String::new(),
        n => format!(
            "; besides, {n} resources of members who left the Group are still there: never listed as deleted, \
             output.matches_export judges them"
        ),
    };
    if blamed.is_empty() {
        let n: u64 = unread.iter().map(|(_, d)| d.count).sum();
        return Finding::Skip(format!(
            "{n} resources the export listed as deleted are in the output, but the client never downloaded a \
             deleted file listing them (files.each_downloaded judges the download){departed}"
        ));
    }
    let n: u64 = blamed.iter().map(|(_, d)| d.count).sum();
    let by_type: Vec<String> =
        blamed.iter().map(|(ty, d)| format!("{ty} {} (e.g. {})", d.count, d.examples.join(", "))).collect();
    Finding::miss_at(
        Level::Must,
        &["CLI-087"],
        format!(
            "{n} resources listed in deleted files the client downloaded are in the output: {}{departed}",
            by_type.join("; ")
        ),
        blamed.iter().flat_map(|(ty, _)| read[ty.as_str()].iter().copied()),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{JobFacts, RunFacts, judge};
    use super::*;
    use crate::adapter::ClientRun;
    use crate::checks::Verdict;
    use crate::verify::{Respelled, TypeDiff};

    #[test]
    fn unions_of_requirements_are_sorted_deduplicated_and_shared() {
        let a = cited(["CLI-092", "CLI-084", "CLI-092"].into_iter());
        assert_eq!(a, &["CLI-084", "CLI-092"]);
        let b = cited(["CLI-084", "CLI-092"].into_iter());
        assert!(std::ptr::eq(a, b), "one allocation per union");
    }

    fn file(seq: u64, name: &str, bytes: u64, length: u64) -> Exchange {
        serde_json::from_value(serde_json::json!({
            "seq": seq, "at_ms": seq, "method": "GET", "path": format!("/fhir/bulkfiles/j1/{name}"),
            "headers": {}, "status": 200, "bytes": bytes, "duration_ms": 1, "target": "file",
            "response": {"content-length": length.to_string()}
        }))
        .unwrap()
    }

    /// Judges check `id` on `output` and `exchanges` after a run that exited 0.
    fn judged(id: &str, output: &OutputReport, exchanges: &[Exchange], runs: &[RunFacts]) -> super::super::CheckResult {
        let file = crate::scenario::parse("title = \"t\"\n", Path::new("scenarios/t.toml")).unwrap();
        let run = ClientRun { exit_code: Some(0), ..ClientRun::default() };
        let job = JobFacts { id: "j1".into(), ..JobFacts::default() };
        let input = Input {
            case: &file.cases[0],
            exchanges,
            run: &run,
            output,
            job: Some(&job),
            fhir_base: "http://127.0.0.1:1/fhir",
            token_url: "",
            client_id: "",
            runs,
        };
        judge(super::super::find(id).unwrap(), &input)
    }

    fn with_details(mut o: OutputReport, kind: &str, ty: &str, n: u64) -> OutputReport {
        let diff = TypeDiff { count: n, examples: vec![format!("{ty}/x")] };
        o.details.entry(ty.into()).or_default().insert(kind.into(), diff);
        o
    }

    #[test]
    fn each_diagnosis_cites_its_own_requirements() {
        let cut = [file(1, "1.Observation.ndjson", 500, 1000)];
        let whole = [file(1, "1.Observation.ndjson", 1000, 1000)];
        let missing = with_details(OutputReport { missing: 3, ..OutputReport::default() }, "missing", "Observation", 3);
        let r = judged("output.matches_export", &missing, &cut, &[]);
        assert_eq!((r.verdict, r.level, r.requirements.clone()), (Verdict::Fail, Level::Must, vec!["CLI-092".into()]));
        let message = &r.evidence.unwrap().message;
        assert!(message.contains("missing after a file received cut or damaged (1.Observation.ndjson)"), "{message}");
        assert_eq!(judged("output.matches_export", &missing, &whole, &[]).requirements, vec!["CLI-086"]);
        let incremental = [RunFacts::default()];
        assert_eq!(judged("output.matches_export", &missing, &whole, &incremental).requirements, vec!["CLI-054"]);
        let gzip = OutputReport { missing: 3, gzip_undecoded: vec!["Observation.ndjson".into()], ..missing.clone() };
        let r = judged("output.matches_export", &gzip, &whole, &[]);
        assert_eq!(r.requirements, vec!["CLI-084"], "a gzip body kept undecoded is not a cut: {:?}", r.evidence);
        let corrupted =
            with_details(OutputReport { corrupted: 1, ..OutputReport::default() }, "corrupted", "Observation", 1);
        let both = OutputReport { missing: 3, ..with_details(corrupted.clone(), "missing", "Observation", 3) };
        assert_eq!(judged("output.matches_export", &corrupted, &whole, &[]).requirements, vec!["CLI-092"]);
        assert_eq!(judged("output.matches_export", &both, &whole, &[]).requirements, vec!["CLI-086", "CLI-092"]);
    }

    #[test]
    fn lost_decimals_alone_pass_the_export_and_warn_on_precision() {
        let lost = Respelled {
            resource: "Observation/o1".into(),
            path: "valueQuantity.value".into(),
            expected: "15.0".into(),
            found: "15".into(),
        };
        let output = OutputReport {
            precision_lost: 1,
            precision_examples: vec![lost],
            decimal_resources: 4,
            ..OutputReport::default()
        };
        assert_eq!(judged("output.matches_export", &output, &[], &[]).verdict, Verdict::Pass);
        let r = judged("output.decimal_precision", &output, &[], &[]);
        assert_eq!((r.verdict, r.requirements.clone()), (Verdict::Warn, Vec::<String>::new()));
        let message = r.evidence.unwrap().message;
        assert!(message.contains("Observation/o1 valueQuantity.value: 15.0 written 15"), "{message}");
        let kept = OutputReport { decimal_resources: 4, ..OutputReport::default() };
        assert_eq!(judged("output.decimal_precision", &kept, &[], &[]).verdict, Verdict::Pass);
        assert_eq!(judged("output.decimal_precision", &OutputReport::default(), &[], &[]).verdict, Verdict::Skip);
    }

    #[test]
    fn deletions_are_blamed_only_when_their_deleted_file_was_downloaded() {
        let mut present = BTreeMap::new();
        present.insert("Procedure".to_string(), TypeDiff { count: 2, examples: vec!["Procedure/p1".into()] });
        let output = OutputReport {
            deleted: crate::verify::Tally { expected: 4, found: 2, missing: 2, extra: 0 },
            deleted_but_present: 2,
            deleted_present: present,
            departed_present: TypeDiff { count: 3, examples: vec!["Patient/left".into()] },
            ..OutputReport::default()
        };
        let read = [file(1, "5.deleted.Procedure.ndjson", 100, 100)];
        let r = judged("output.deleted_not_added", &output, &read, &[]);
        assert_eq!((r.verdict, r.requirements.clone()), (Verdict::Fail, vec!["CLI-087".to_string()]));
        let evidence = r.evidence.unwrap();
        assert!(evidence.message.contains("2 resources listed in deleted files the client downloaded"));
        assert!(evidence.message.contains("3 resources of members who left the Group"), "{}", evidence.message);
        assert_eq!(evidence.exchanges.len(), 1);
        let other = [file(1, "5.deleted.Condition.ndjson", 100, 100)];
        let r = judged("output.deleted_not_added", &output, &other, &[]);
        assert_eq!(r.verdict, Verdict::Skip, "never downloaded: {:?}", r.evidence);
        let only_departed = OutputReport { deleted_but_present: 0, deleted_present: BTreeMap::new(), ..output };
        assert_eq!(judged("output.deleted_not_added", &only_departed, &read, &[]).verdict, Verdict::Pass);
    }
}
