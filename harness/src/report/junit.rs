//! The report for CI systems: JUnit XML (quick-junit), valid against the
//! Jenkins xUnit plugin's `junit-10.xsd`, which GitLab and Jenkins read.
//!
//! One `<testsuite>` per scenario area (the first segment of the scenario id),
//! one `<testcase>` per case (`name` = case id, `classname` = scenario id).
//! `fail` is a `<failure>`, `error` and `timeout` are `<error>`s, each listing
//! the checks not met with requirement IDs and evidence; `warn` is a pass whose
//! `<system-out>` lists the SHOULD checks not met (the schema allows no
//! properties on a test case). Seed, client, bulkmock version and suite digest
//! are properties of every test suite.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{CaseResult, CaseVerdict, RunReport};
use crate::checks::{CheckResult, Verdict};

/// The JUnit XML document of `report`.
pub fn render(report: &RunReport) -> String {
    let mut areas: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for case in &report.cases {
        areas.entry(area(&case.scenario)).or_default().push(case);
    }
    let mut junit = Report::new("bulkmock");
    for (area, cases) in areas {
        let mut suite = TestSuite::new(area);
        suite.add_properties(properties(report));
        let seconds: f64 = cases.iter().map(|c| c.outcome.seconds).sum();
        suite.set_time(duration(seconds));
        suite.add_test_cases(cases.into_iter().map(test_case));
        junit.add_test_suite(suite);
    }
    let xml = junit.to_string().expect("a JUnit report serialises to memory");
    // junit-10.xsd allows no `skipped` on <testsuites>; cases are never skipped,
    // so the root's count is always 0 and says nothing.
    xml.replacen(" skipped=\"0\"", "", 1)
}

/// The area of a scenario id: `auth/token-expires` -> `auth`.
fn area(scenario: &str) -> &str {
    scenario.split('/').next().unwrap_or(scenario)
}

fn properties(report: &RunReport) -> Vec<Property> {
    let mut p = vec![
        Property::new("seed", report.seed.to_string()),
        Property::new("client", report.client.as_str()),
        Property::new("bulkmock_version", report.bulkmock_version.as_str()),
    ];
    if let Some(suite) = &report.suite {
        p.push(Property::new("suite_digest", suite.digest.as_str()));
        p.push(Property::new("suite_cases_total", suite.cases_total.to_string()));
        if let Some(source) = &suite.source {
            p.push(Property::new("suite_source", source.as_str()));
        }
    }
    p
}

fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or_default()
}

fn test_case(case: &CaseResult) -> TestCase {
    let not_met: Vec<&CheckResult> =
        case.checks.iter().filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::Warn | Verdict::Info)).collect();
    let status = match case.verdict {
        CaseVerdict::Pass | CaseVerdict::Warn => TestCaseStatus::success(),
        CaseVerdict::NotApplicable => {
            let mut s = TestCaseStatus::skipped();
            s.set_type("not_applicable").set_message(case.not_applicable.clone().unwrap_or_default());
            s
        }
        CaseVerdict::Fail => {
            let failed: Vec<&CheckResult> = not_met.iter().copied().filter(|c| c.verdict == Verdict::Fail).collect();
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_type("fail").set_message(headline(&failed)).set_description(describe(case, &not_met));
            s
        }
        CaseVerdict::Error | CaseVerdict::Timeout => {
            let message = match (&case.error, case.verdict) {
                (Some(e), _) => e.clone(),
                (None, CaseVerdict::Timeout) => {
                    format!("still running at the deadline ({:.1} s)", case.outcome.seconds)
                }
                (None, _) => "the case could not be run".to_string(),
            };
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_type(case.verdict.as_str()).set_message(message).set_description(describe(case, &not_met));
            s
        }
    };
    let mut tc = TestCase::new(case.id.as_str(), status);
    tc.set_classname(case.scenario.as_str()).set_time(duration(case.outcome.seconds));
    let mut out = format!(
        "{}: {} ({}, {} requests)\nrequirements: {}\n",
        case.verdict.as_str(),
        case.title,
        case.outcome.observed,
        case.outcome.requests,
        case.requirements.join(", ")
    );
    if case.verdict == CaseVerdict::Warn {
        out.push_str(&describe(case, &not_met));
    }
    let _ = writeln!(out, "re-run: {}", case.rerun);
    for line in case.outcome.stdout_tail.lines() {
        let _ = writeln!(out, "stdout: {line}");
    }
    tc.set_system_out(out);
    if !case.outcome.stderr_tail.is_empty() {
        tc.set_system_err(case.outcome.stderr_tail.as_str());
    }

    tc
}

/// `2 MUST checks failed: output.matches_export [CLI-092, ...], ...`
fn headline(failed: &[&CheckResult]) -> String {
    let names: Vec<String> = failed.iter().map(|c| format!("{} [{}]", c.id, c.requirements.join(", "))).collect();
    match failed.len() {
        1 => format!("MUST check failed: {}", names[0]),
        n => format!("{n} MUST checks failed: {}", names.join("; ")),
    }
}

/// Every check not met with its level, requirement IDs, evidence and exchanges.
fn describe(case: &CaseResult, not_met: &[&CheckResult]) -> String {
    let mut out = String::new();
    for check in not_met {
        let _ = writeln!(
            out,
            "{} {} {} [{}]",
            check.verdict.as_str(),
            check.level.as_str(),
            check.id,
            check.requirements.join(", ")
        );
        if let Some(ev) = &check.evidence {
            let _ = writeln!(out, "    {}", ev.message);
            for x in &ev.exchanges {
                let _ = writeln!(out, "    {x}");
            }
        }
    }
    if let Some(e) = &case.error {
        let _ = writeln!(out, "error: {e}");
    }
    out
}
