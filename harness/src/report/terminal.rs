//! The report for people at a terminal: one line per finished case with its
//! failed checks and evidence, then a summary table.

use std::fmt::Write;

use super::{CaseResult, CaseVerdict, RunReport};
use crate::checks::Verdict;

/// One finished case: its verdict, then each check that did not pass with its evidence.
pub fn case_lines(case: &CaseResult, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {}  ({}, {} requests, {:.1} s)",
        case.verdict.as_str().to_uppercase(),
        case.id,
        case.outcome.observed,
        case.outcome.requests,
        case.outcome.seconds
    );
    if let Some(e) = &case.error {
        let _ = writeln!(out, "        error: {e}");
    }
    for why in &case.faults_not_applied {
        let _ = writeln!(out, "        fault not applied: {why}");
    }
    if let Some(needs) = &case.not_applicable {
        let _ = writeln!(out, "        not applicable: {needs}");
    }
    if let Some(dir) = &case.dir {
        let _ = writeln!(out, "        folder: {dir}");
    }
    for check in &case.checks {
        let shown = match check.verdict {
            Verdict::Fail | Verdict::Warn => true,
            Verdict::Info | Verdict::Pass | Verdict::Skip => verbose,
        };
        if !shown {
            continue;
        }
        let _ = writeln!(
            out,
            "        {:<5} {:<6} {} [{}]",
            check.verdict.as_str(),
            check.level.as_str(),
            check.id,
            check.requirements.join(", ")
        );
        if let Some(ev) = &check.evidence {
            let _ = writeln!(out, "              {}", ev.message);
            for x in &ev.exchanges {
                let _ = writeln!(out, "              {x}");
            }
        }
    }
    if matches!(case.verdict, CaseVerdict::Fail | CaseVerdict::Error | CaseVerdict::Timeout) {
        for (name, tail) in [("stderr", &case.outcome.stderr_tail), ("stdout", &case.outcome.stdout_tail)] {
            for line in tail.lines() {
                let _ = writeln!(out, "        {name}: {line}");
            }
        }
        let _ = writeln!(out, "        re-run: {}", case.rerun);
    }
    out
}

/// The summary table.
pub fn summary(report: &RunReport) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(out, "\nseed {}  client {}", report.seed, report.client);
    if let Some(suite) = &report.suite {
        let short = suite.digest.get(..19).unwrap_or(&suite.digest);
        let origin = suite.origin().map(|o| format!("{o} ")).unwrap_or_default();
        let _ = writeln!(out, "suite {origin}{short} ({} cases)", suite.cases_total);
    }
    if let Some(profile) = &report.client_profile {
        let _ = writeln!(out, "client profile {profile}");
    }
    if report.time_scale != 1.0 {
        let _ = writeln!(out, "time scale {} (every max_seconds multiplied)", report.time_scale);
    }
    let _ = writeln!(out, "{:<8} {:>6}", "verdict", "cases");
    for (name, n) in s.by_verdict() {
        let _ = writeln!(out, "{name:<8} {n:>6}");
    }
    let _ = writeln!(
        out,
        "MUST checks {}/{} passed, SHOULD checks {}/{} passed",
        s.must.passed, s.must.total, s.should.passed, s.should.total
    );
    let _ = writeln!(out, "{} passed, {} failed", s.passed + s.warned, s.failed + s.errors + s.timeouts);
    out
}
