//! The JUnit XML and Markdown reports, rendered from a hand-made `RunReport`
//! with every verdict: JUnit must satisfy the rules of the Jenkins xUnit
//! plugin's `junit-10.xsd` (what Jenkins and GitLab read), checked here
//! element by element, and by `xmllint --schema` when `xmllint` is installed
//! and `BULKMOCK_JUNIT_XSD` names a copy of that schema.

use std::collections::BTreeMap;

use bulkmock_harness::report::{RunReport, junit, markdown};
use bulkmock_harness::verify::OutputReport;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Value, json};

fn check(id: &str, reqs: &[&str], level: &str, verdict: &str, message: Option<&str>) -> Value {
    let mut c = json!({"id": id, "requirements": reqs, "level": level, "verdict": verdict});
    if let Some(m) = message {
        c["evidence"] = json!({"message": m, "exchanges": [
            {"seq": 4, "at_ms": 120, "method": "GET", "url": "/fhir/bulkstatus/j1?x=<y>&z", "status": 503, "bytes": 17, "fault": "status#1"}
        ]});
    }
    c
}

fn case(id: &str, verdict: &str, checks: Vec<Value>, error: Option<&str>) -> Value {
    let scenario = id.split('#').next().unwrap();
    let mut c = json!({
        "id": id, "scenario": scenario, "title": format!("title of {scenario} | with <html> & `code`"),
        "requirements": ["CLI-062"], "matrix": {}, "verdict": verdict,
        "outcome": {"expected": "complete", "observed": "complete", "exit_code": 0, "seconds": 1.25, "requests": 9,
            "output": serde_json::to_value(OutputReport::default()).unwrap(), "stderr_tail": "line 1\n```\nline <3>"},
        "checks": checks,
        "rerun": format!("bulkmock run scenarios --filter '{id}' --seed 7"),
    });
    if let Some(e) = error {
        c["error"] = json!(e);
    }
    c
}

/// A report with a pass, a warn, a fail, an error, a timeout and an info, in two areas.
fn sample() -> RunReport {
    let pass = |id, reqs: &[&str]| check(id, reqs, "MUST", "pass", None);
    let cases = vec![
        case(
            "auth/a",
            "pass",
            vec![pass("auth.fresh_jti", &["CLI-020"]), check("x.may", &["CLI-100"], "MAY", "info", Some("no DELETE"))],
            None,
        ),
        case(
            "status/retry#form=s",
            "warn",
            vec![
                pass("auth.fresh_jti", &["CLI-020"]),
                check("status.honours_retry_after", &["CLI-062"], "SHOULD", "warn", Some("polled 0.7 s early")),
            ],
            None,
        ),
        case(
            "status/retry#form=date",
            "fail",
            vec![
                check("auth.fresh_jti", &["CLI-020"], "MUST", "fail", Some("jti reused")),
                check("output.matches_export", &["CLI-092", "CLI-086"], "MUST", "fail", Some("70 of 140 | missing")),
                check("status.honours_retry_after", &["CLI-062"], "SHOULD", "skip", None),
            ],
            None,
        ),
        case("status/boom", "error", vec![], Some("cannot start the client: sh: not found")),
        case("status/slow", "timeout", vec![pass("auth.fresh_jti", &["CLI-020"])], None),
    ];
    let mut report: RunReport = serde_json::from_value(json!({
        "seed": 7, "client": "my-client --x '<a & b>'", "bulkmock_version": "0.1.0",
        "suite": {"cases_total": 5, "digest": "sha256:00112233445566778899", "source": "builtin"},
        "cases": cases, "summary": {"cases": 0, "passed": 0, "failed": 0, "warned": 0, "errors": 0, "timeouts": 0,
            "must": {"passed": 0, "total": 0}, "should": {"passed": 0, "total": 0}},
    }))
    .expect("the sample is a RunReport");
    let suite = report.suite.take();
    report = RunReport::new(report.seed, report.client, report.cases);
    report.suite = suite;
    report
}

/// What junit-10.xsd allows: per element, its children and attributes (required ones marked `!`).
fn schema() -> BTreeMap<&'static str, (&'static [&'static str], &'static [&'static str])> {
    const TEXT: &[&str] = &[];
    let verdict: &[&str] = &["type", "message"];
    BTreeMap::from([
        ("testsuites", (&["testsuite"][..], &["name", "time", "tests", "failures", "errors"][..])),
        (
            "testsuite",
            (
                &["testsuite", "properties", "testcase", "system-out", "system-err"][..],
                &[
                    "!name",
                    "!tests",
                    "!failures",
                    "!errors",
                    "group",
                    "time",
                    "skipped",
                    "timestamp",
                    "hostname",
                    "id",
                    "package",
                    "file",
                    "log",
                    "url",
                ][..],
            ),
        ),
        ("properties", (&["property"][..], &[][..])),
        ("property", (TEXT, &["!name", "!value"][..])),
        (
            "testcase",
            (
                &[
                    "skipped",
                    "error",
                    "failure",
                    "rerunFailure",
                    "rerunError",
                    "flakyFailure",
                    "flakyError",
                    "system-out",
                    "system-err",
                ][..],
                &["!name", "time", "classname", "group"][..],
            ),
        ),
        ("failure", (TEXT, verdict)),
        ("error", (TEXT, verdict)),
        ("skipped", (TEXT, verdict)),
        ("system-out", (TEXT, &[][..])),
        ("system-err", (TEXT, &[][..])),
    ])
}

/// `SUREFIRE_TIME` of junit-10.xsd, for the values quick-junit writes: digits, optionally `.digits`.
fn is_surefire_time(t: &str) -> bool {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit())
}

fn check_element(stack: &[String], e: &BytesStart<'_>) -> String {
    let rules = schema();
    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
    match stack.last() {
        None => assert_eq!(name, "testsuites", "the root"),
        Some(parent) => {
            let (children, _) = rules[parent.as_str()];
            assert!(children.contains(&name.as_str()), "<{name}> is not allowed in <{parent}>");
        }
    }
    let (_, attrs) = rules.get(name.as_str()).unwrap_or_else(|| panic!("<{name}> is not in the schema"));
    let mut seen = Vec::new();
    for a in e.attributes() {
        let a = a.unwrap();
        let key = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
        assert!(
            attrs.iter().any(|x| x.trim_start_matches('!') == key),
            "<{name} {key}=...> is not allowed by junit-10.xsd"
        );
        if key == "time" && name != "testcase" {
            let value = String::from_utf8_lossy(&a.value);
            assert!(is_surefire_time(&value), "<{name} time={value:?}> is not a SUREFIRE_TIME");
        }
        seen.push(key);
    }
    for required in attrs.iter().filter_map(|a| a.strip_prefix('!')) {
        assert!(seen.iter().any(|s| s == required), "<{name}> lacks the required {required}=");
    }
    name
}

/// Walks the document and asserts junit-10.xsd's element and attribute rules.
fn assert_junit_10(xml: &str) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => {
                let name = check_element(&stack, &e);
                stack.push(name);
            }
            Event::Empty(e) => {
                check_element(&stack, &e);
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                // Only the mixed-content elements hold text.
                let parent = stack.last().map(String::as_str).unwrap_or("");
                let mixed = ["failure", "error", "skipped", "system-out", "system-err"].contains(&parent);
                assert!(mixed || t.decode().unwrap().trim().is_empty(), "text inside <{parent}>");
            }
            Event::CData(_) => {
                let parent = stack.last().map(String::as_str).unwrap_or("");
                assert!(
                    ["failure", "error", "skipped", "system-out", "system-err"].contains(&parent),
                    "CDATA in <{parent}>"
                );
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
}

/// `xmllint --schema` against a copy of junit-10.xsd, when both are at hand.
fn xmllint(xml: &str) {
    let Ok(xsd) = std::env::var("BULKMOCK_JUNIT_XSD") else {
        eprintln!("BULKMOCK_JUNIT_XSD not set: the element-by-element check stands in for xmllint");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junit.xml");
    std::fs::write(&file, xml).unwrap();
    let out = match std::process::Command::new("xmllint").arg("--noout").arg("--schema").arg(&xsd).arg(&file).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("xmllint not runnable ({e}): the element-by-element check stands in for it");
            return;
        }
    };
    assert!(out.status.success(), "xmllint --schema {xsd}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn junit_is_valid_against_junit_10_and_carries_the_evidence() {
    let report = sample();
    let xml = junit::render(&report);
    assert_junit_10(&xml);
    xmllint(&xml);

    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("quick-junit reads it back");
    let suites: Vec<&str> = parsed.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(suites, ["auth", "status"], "one suite per area");
    assert_eq!((parsed.tests, parsed.failures, parsed.errors), (5, 1, 2));
    let status = &parsed.test_suites[1];
    let props: BTreeMap<&str, &str> = status.properties.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
    assert_eq!(props["seed"], "7");
    assert_eq!(props["client"], "my-client --x '<a & b>'");
    assert_eq!(props["suite_digest"], "sha256:00112233445566778899");
    assert_eq!(props["suite_source"], "builtin");
    let by_name: BTreeMap<&str, &quick_junit::TestCase> =
        status.test_cases.iter().map(|c| (c.name.as_str(), c)).collect();
    let failed = by_name["status/retry#form=date"];
    assert_eq!(failed.classname.as_ref().map(|c| c.as_str()), Some("status/retry"));
    let quick_junit::TestCaseStatus::NonSuccess { kind, message, description, .. } = &failed.status else {
        panic!("a failure: {:?}", failed.status)
    };
    assert_eq!(*kind, quick_junit::NonSuccessKind::Failure);
    assert_eq!(
        message.as_ref().unwrap().as_str(),
        "2 MUST checks failed: auth.fresh_jti [CLI-020]; output.matches_export [CLI-092, CLI-086]"
    );
    let description = description.as_ref().unwrap().as_str();
    assert!(description.contains("fail MUST output.matches_export [CLI-092, CLI-086]\n    70 of 140 | missing"));
    assert!(description.contains("#4 +120 ms GET /fhir/bulkstatus/j1?x=<y>&z -> 503 (17 bytes) fault status#1"));
    assert!(!description.contains("status.honours_retry_after"), "skipped checks are not evidence");

    let warned = by_name["status/retry#form=s"];
    assert!(matches!(warned.status, quick_junit::TestCaseStatus::Success { .. }), "warn passes");
    let out = warned.system_out.as_ref().unwrap().as_str();
    assert!(out.contains("warn SHOULD status.honours_retry_after [CLI-062]\n    polled 0.7 s early"), "{out}");

    for (id, ty) in [("status/boom", "error"), ("status/slow", "timeout")] {
        let quick_junit::TestCaseStatus::NonSuccess { kind, ty: t, message, .. } = &by_name[id].status else {
            panic!("{id} is an error")
        };
        assert_eq!((*kind, t.as_ref().unwrap().as_str()), (quick_junit::NonSuccessKind::Error, ty));
        assert!(!message.as_ref().unwrap().is_empty());
    }
    assert!(by_name["status/boom"].system_err.as_ref().unwrap().as_str().contains("line <3>"));
}

#[test]
fn the_json_reads_back_as_written() {
    let json = serde_json::to_value(sample()).unwrap();
    let again: RunReport = serde_json::from_value(json.clone()).expect("a written report reads back");
    assert_eq!(serde_json::to_value(again).unwrap(), json);
}

#[test]
fn junit_of_an_empty_report_is_valid() {
    let xml = junit::render(&RunReport::new(1, "builtin".into(), vec![]));
    assert_junit_10(&xml);
    xmllint(&xml);
}

#[test]
fn markdown_groups_by_requirement_then_scenario_with_working_links() {
    let md = markdown::render(&sample());
    assert!(md.starts_with("## bulkmock conformance report: ❌ fail\n"), "{md}");
    assert!(md.contains("suite `sha256:001122334455` (built-in, 5 cases)"), "{md}");
    assert!(md.contains("| 5 | 1 | 1 | 1 | 1 | 1 | 0 | 3/5 | 0/1 |"), "{md}");
    // Requirement rows: strength and text from the requirements list, counts per case, links.
    let row = md.lines().find(|l| l.starts_with("| CLI-020 |")).expect("a CLI-020 row");
    assert!(
        row.contains("| SHALL | MUST | a fresh, single-use JWT for every token request | ❌ fail 1 · pass 3 |"),
        "{row}"
    );
    assert!(row.contains("[status/retry\\#form=date](#case-status-retry-form-date)"), "{row}");
    // Named by every scenario, cited by a check in two cases: the other cases' verdicts judge it.
    let row = md.lines().find(|l| l.starts_with("| CLI-062 |")).expect("a CLI-062 row");
    assert!(row.contains("| SHOULD | SHOULD | let Retry-After set the next poll"), "{row}");
    assert!(row.contains("❌ fail 2 · warn 1 · pass 1 · skip 1 |"), "{row}");
    assert!(row.contains("[status/boom](#case-status-boom)"), "{row}");
    let row = md.lines().find(|l| l.starts_with("| CLI-100 |")).expect("a CLI-100 row");
    assert!(row.contains("ℹ️ info 1"), "{row}");
    // Every link has its anchor.
    for link in md.split("](#").skip(1) {
        let anchor = &link[..link.find(')').unwrap()];
        assert!(md.contains(&format!("<a id=\"{anchor}\"></a>")), "no anchor {anchor}");
    }
    // Scenario sections: failed checks with evidence; the escaped message; stderr folded.
    assert!(md.contains("#### `status/retry`: title of status/retry \\| with \\<html\\> \\& \\`code\\`"), "{md}");
    assert!(md.contains("- **fail** MUST `output.matches_export` [CLI-092, CLI-086]: 70 of 140 \\| missing"), "{md}");
    assert!(md.contains("  - `#4 +120 ms GET /fhir/bulkstatus/j1?x=<y>&z -> 503 (17 bytes) fault status#1`"), "{md}");
    assert!(md.contains("- error: cannot start the client: sh: not found"), "{md}");
    assert!(md.contains("<details><summary>stderr</summary>\n\n````text\nline 1\n```\nline <3>\n````"), "{md}");
    assert!(!md.contains("passed cases"), "the only passed case has an info check, so a section");
}

#[test]
fn the_schema_check_refuses_what_junit_10_refuses() {
    for bad in [
        r#"<testsuites skipped="0"/>"#,
        r#"<testsuites><testsuite name="a" tests="1" failures="0"/></testsuites>"#,
        r#"<testsuites><testsuite name="a" tests="1" failures="0" errors="0"><testcase name="x"><properties/></testcase></testsuite></testsuites>"#,
        r#"<testsuites><testsuite name="a" tests="1" failures="0" errors="0" time="1.5s"/></testsuites>"#,
    ] {
        assert!(std::panic::catch_unwind(|| assert_junit_10(bad)).is_err(), "accepted {bad}");
    }
}
