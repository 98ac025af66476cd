//! The output on disk against the export the job produced, and how the run ended.

use super::{Check, Evidence, Finding, Input, Level};
use crate::scenario::ExpectedOutcome;
use crate::verify::OutputReport;

/// The family's checks.
pub const CHECKS: &[Check] = &[
    Check {
        id: "output.matches_export",
        title: "a client that reports success holds exactly the exported resources: nothing missing, extra, duplicated or corrupted",
        requirements: &["CLI-092", "CLI-084", "CLI-086", "CLI-090"],
        level: Level::Must,
        always: true,
        run: matches_export,
    },
    Check {
        id: "output.deleted_not_added",
        title: "resources listed in deleted files are never added",
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

/// A one-line account of the differences, with examples.
pub fn describe(o: &OutputReport) -> String {
    let mut parts = Vec::new();
    for (kind, n) in
        [("missing", o.missing), ("extra", o.extra), ("duplicated", o.duplicated), ("corrupted", o.corrupted)]
    {
        if n == 0 {
            continue;
        }
        let examples: Vec<String> = o
            .details
            .iter()
            .filter_map(|(ty, kinds)| kinds.get(kind).map(|d| (ty, d)))
            .map(|(ty, d)| {
                format!("{ty} {}{}", d.count, d.examples.first().map(|x| format!(" (e.g. {x})")).unwrap_or_default())
            })
            .collect();
        parts.push(format!("{n} {kind}: {}", examples.join(", ")));
    }
    if o.too_large {
        parts.push("output too large to read".into());
    }
    format!("{} of {} expected resources found; {}", o.resources, o.expected_resources, parts.join("; "))
}

fn matches_export(input: &Input) -> Finding {
    if input.run.exit_code != Some(0) {
        return Finding::skip("the client did not report success");
    }
    let expect = &input.case.scenario.expect;
    if input.job.is_none() {
        // Success without an export is no success when the case expects one.
        let wanted = expect.outcome != ExpectedOutcome::FailCleanly
            && expect.output == crate::scenario::OutputExpectation::Export;
        return if wanted {
            Finding::Miss(Evidence { message: "exit 0, but no export was ever started".into(), exchanges: Vec::new() })
        } else {
            Finding::skip("no export was started")
        };
    }
    if expect.output == crate::scenario::OutputExpectation::Any {
        return Finding::skip("the case does not compare the output");
    }
    if input.output.resources_exact() || filtered_client_side(input) {
        Finding::Pass
    } else {
        Finding::Miss(Evidence {
            message: format!("exit 0, but the output differs from the export: {}", describe(input.output)),
            exchanges: Vec::new(),
        })
    }
}

/// Whether the output is the export minus exactly the resources beyond an
/// ignored `_typeFilter`: a client that filtered client-side (CLI-048).
fn filtered_client_side(input: &Input) -> bool {
    let o = input.output;
    let beyond = input.job.map_or(0, |j| j.beyond_type_filter);
    beyond > 0 && o.missing == beyond && o.extra == 0 && o.duplicated == 0 && o.corrupted == 0 && !o.too_large
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

fn deleted_not_added(input: &Input) -> Finding {
    if input.output.deleted.expected == 0 {
        return Finding::skip("the export deleted nothing");
    }
    if input.output.deleted_but_present == 0 {
        Finding::Pass
    } else {
        Finding::Miss(Evidence {
            message: format!("{} resources listed as deleted are in the output", input.output.deleted_but_present),
            exchanges: Vec::new(),
        })
    }
}
