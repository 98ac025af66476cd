//! The report for a pull-request comment: Markdown (GitHub flavour), grouped
//! by requirement ID, then by scenario. Compact: what is not met is shown,
//! what passed folds into `<details>`. Every link points to an anchor of a
//! case section (`#case-...`) in the same document.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use super::{CaseResult, CaseVerdict, RunReport};
use crate::checks::{CheckResult, Level, Verdict};
use crate::requirements;

/// Links shown per requirement row before `+N more`.
const LINKS_PER_ROW: usize = 4;

/// Characters after which case sections and the passed list are left out:
/// a GitHub comment holds at most 65,536.
const BUDGET: usize = 60_000;

/// The Markdown document of `report`.
pub fn render(report: &RunReport) -> String {
    let anchors = Anchors::of(report);
    let mut out = String::new();
    header(&mut out, report);
    requirements_section(&mut out, report, &anchors);
    scenarios_section(&mut out, report, &anchors);
    out
}

fn header(out: &mut String, report: &RunReport) {
    let s = &report.summary;
    let verdict = if report.passed(false) { "✅ pass" } else { "❌ fail" };
    let _ = writeln!(out, "## bulkmock conformance report: {verdict}\n");
    let mut facts = vec![
        format!("client {}", code(&report.client)),
        format!("seed {}", report.seed),
        format!("bulkmock {}", report.bulkmock_version),
    ];
    if report.time_scale != 1.0 {
        facts.push(format!("time scale {}", report.time_scale));
    }
    if let Some(suite) = &report.suite {
        let origin = suite.origin().map(|o| format!("{o}, ")).unwrap_or_default();
        facts.push(format!("suite {} ({origin}{} cases)", code(short_digest(&suite.digest)), suite.cases_total));
    }
    let _ = writeln!(out, "{}\n", facts.join(" · "));
    let _ = writeln!(
        out,
        "| cases | pass | warn | fail | error | timeout | not applicable | MUST checks | SHOULD checks |"
    );
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {}/{} | {}/{} |\n",
        s.cases,
        s.passed,
        s.warned,
        s.failed,
        s.errors,
        s.timeouts,
        s.not_applicable,
        s.must.passed,
        s.must.total,
        s.should.passed,
        s.should.total
    );
}

/// `sha256:0123456789ab` from the full digest.
fn short_digest(digest: &str) -> &str {
    let end = digest.find(':').map_or(12, |i| i + 13).min(digest.len());
    &digest[..end]
}

/// One requirement across all cases: per case the worst verdict of its checks citing it.
struct Row<'a> {
    id: &'a str,
    /// The strongest level of the checks citing it; `None` when only scenarios name it
    /// (then each case's verdict judges it).
    level: Option<Level>,
    counts: BTreeMap<Rank, usize>,
    cases: Vec<(Rank, &'a CaseResult)>,
}

impl Row<'_> {
    fn worst(&self) -> Rank {
        self.counts.keys().next().copied().unwrap_or(Rank::Skip)
    }
}

/// Check verdicts from worst to best, for ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Fail,
    Warn,
    Info,
    Pass,
    Skip,
}

impl Rank {
    fn of(v: Verdict) -> Rank {
        match v {
            Verdict::Fail => Rank::Fail,
            Verdict::Warn => Rank::Warn,
            Verdict::Info => Rank::Info,
            Verdict::Pass => Rank::Pass,
            Verdict::Skip => Rank::Skip,
        }
    }

    fn of_case(v: CaseVerdict) -> Rank {
        match v {
            CaseVerdict::Pass => Rank::Pass,
            CaseVerdict::Warn => Rank::Warn,
            CaseVerdict::Fail | CaseVerdict::Error | CaseVerdict::Timeout => Rank::Fail,
            CaseVerdict::NotApplicable => Rank::Skip,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rank::Fail => "fail",
            Rank::Warn => "warn",
            Rank::Info => "info",
            Rank::Pass => "pass",
            Rank::Skip => "skip",
        }
    }

    fn icon(self) -> &'static str {
        match self {
            Rank::Fail => "❌",
            Rank::Warn => "⚠️",
            Rank::Info => "ℹ️",
            Rank::Pass => "✅",
            Rank::Skip => "➖",
        }
    }
}

fn rows(report: &RunReport) -> Vec<Row<'_>> {
    let mut rows: BTreeMap<&str, Row<'_>> = BTreeMap::new();
    for case in &report.cases {
        let mut worst: BTreeMap<&str, Rank> = BTreeMap::new();
        for check in &case.checks {
            for req in &check.requirements {
                let rank = Rank::of(check.verdict);
                let entry = worst.entry(req.as_str()).or_insert(rank);
                *entry = (*entry).min(rank);
                let row = rows.entry(req).or_insert_with(|| Row {
                    id: req,
                    level: None,
                    counts: BTreeMap::new(),
                    cases: Vec::new(),
                });
                row.level = Some(row.level.map_or(check.level, |l| strongest(l, check.level)));
            }
        }
        // Requirements the scenario names but no check of this case cites: the case's verdict judges them.
        for req in &case.requirements {
            if !worst.contains_key(req.as_str()) {
                worst.insert(req, Rank::of_case(case.verdict));
                rows.entry(req).or_insert_with(|| Row {
                    id: req,
                    level: None,
                    counts: BTreeMap::new(),
                    cases: Vec::new(),
                });
            }
        }
        for (id, rank) in worst {
            let row = rows.get_mut(id).expect("a row per cited requirement");
            *row.counts.entry(rank).or_default() += 1;
            row.cases.push((rank, case));
        }
    }
    rows.into_values().collect()
}

fn strongest(a: Level, b: Level) -> Level {
    match (a, b) {
        (Level::Must, _) | (_, Level::Must) => Level::Must,
        (Level::Should, _) | (_, Level::Should) => Level::Should,
        _ => Level::May,
    }
}

fn requirements_section(out: &mut String, report: &RunReport, anchors: &Anchors) {
    let rows = rows(report);
    let not_met: Vec<&Row<'_>> = rows.iter().filter(|r| r.worst() < Rank::Pass).collect();
    let _ = writeln!(out, "### Requirements\n");
    let _ = writeln!(out, "{} requirements judged; {} not met in some case.\n", rows.len(), not_met.len());
    if !not_met.is_empty() {
        requirement_table(out, not_met.iter().copied(), anchors);
    }
    let _ = writeln!(out, "<details><summary>All {} requirements</summary>\n", rows.len());
    requirement_table(out, rows.iter(), anchors);
    let _ = writeln!(out, "</details>\n");
}

fn requirement_table<'a>(out: &mut String, rows: impl Iterator<Item = &'a Row<'a>>, anchors: &Anchors) {
    let _ = writeln!(out, "| ID | strength | checked as | requirement | cases | evidence |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let (strength, text) =
            requirements::find(row.id).map_or(("", "not a client requirement"), |r| (r.strength, r.text));
        let counts: Vec<String> = row.counts.iter().map(|(rank, n)| format!("{} {n}", rank.name())).collect();
        // Evidence: the cases where it was not met.
        let cases: Vec<&CaseResult> = row.cases.iter().filter(|(r, _)| *r < Rank::Pass).map(|(_, c)| *c).collect();
        let mut links: Vec<String> =
            cases.iter().take(LINKS_PER_ROW).map(|c| format!("[{}](#{})", escape(&c.id), anchors.get(&c.id))).collect();
        if cases.len() > LINKS_PER_ROW {
            links.push(format!("+{} more", cases.len() - LINKS_PER_ROW));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} {} | {} |",
            row.id,
            strength,
            row.level.map_or("case verdict", Level::as_str),
            escape(text),
            row.worst().icon(),
            counts.join(" · "),
            links.join(", ")
        );
    }
    out.push('\n');
}

/// Whether a case gets its own section: not passed, or a MAY check not met.
fn noteworthy(case: &CaseResult) -> bool {
    case.verdict != CaseVerdict::Pass || case.checks.iter().any(|c| c.verdict == Verdict::Info)
}

fn scenarios_section(out: &mut String, report: &RunReport, anchors: &Anchors) {
    let _ = writeln!(out, "### Scenarios\n");
    let (attention, passed): (Vec<&CaseResult>, Vec<&CaseResult>) = report.cases.iter().partition(|c| noteworthy(c));
    let mut scenario = "";
    for (i, case) in attention.iter().enumerate() {
        if out.len() > BUDGET {
            let _ = writeln!(
                out,
                "… {} more cases not shown here to stay within a comment's size: see the JSON or HTML report.\n",
                attention.len() - i
            );
            break;
        }
        if case.scenario != scenario {
            scenario = &case.scenario;
            let _ = writeln!(out, "#### {}: {}\n", code(scenario), escape(&case.title));
        }
        case_section(out, case, anchors);
    }
    if attention.is_empty() {
        let _ = writeln!(out, "Every case passed.\n");
    }
    if passed.is_empty() {
        return;
    }
    let mut list = String::new();
    for case in &passed {
        let _ = writeln!(list, "- {} ({}, {} requests)", code(&case.id), case.outcome.observed, case.outcome.requests);
    }
    let _ = writeln!(out, "<details><summary>{} passed cases</summary>\n", passed.len());
    if out.len() + list.len() > BUDGET {
        let _ = writeln!(out, "Not listed here to stay within a comment's size: see the JSON or HTML report.");
    } else {
        out.push_str(&list);
    }
    let _ = writeln!(out, "\n</details>");
}

fn case_icon(v: CaseVerdict) -> &'static str {
    match v {
        CaseVerdict::Pass => "✅",
        CaseVerdict::Warn => "⚠️",
        CaseVerdict::Fail => "❌",
        CaseVerdict::Error => "💥",
        CaseVerdict::Timeout => "⏱️",
        CaseVerdict::NotApplicable => "➖",
    }
}

fn case_section(out: &mut String, case: &CaseResult, anchors: &Anchors) {
    let _ = writeln!(
        out,
        "<a id=\"{}\"></a>{} **{}** {} ({}, {} requests, {:.1} s)\n",
        anchors.get(&case.id),
        case_icon(case.verdict),
        case.verdict.as_str(),
        code(&case.id),
        case.outcome.observed,
        case.outcome.requests,
        case.outcome.seconds
    );
    if let Some(e) = &case.error {
        let _ = writeln!(out, "- error: {}", escape(e));
    }
    for check in case.checks.iter().filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::Warn | Verdict::Info)) {
        check_item(out, check);
    }
    let _ = writeln!(out, "- re-run: {}", code(&case.rerun));
    if !case.outcome.stderr_tail.is_empty() && case.verdict != CaseVerdict::Warn {
        let _ = writeln!(out, "\n<details><summary>stderr</summary>\n");
        let _ = writeln!(out, "{}", fence(&case.outcome.stderr_tail));
        let _ = writeln!(out, "</details>");
    }
    out.push('\n');
}

fn check_item(out: &mut String, check: &CheckResult) {
    let _ = write!(
        out,
        "- **{}** {} {} [{}]",
        check.verdict.as_str(),
        check.level.as_str(),
        code(&check.id),
        check.requirements.join(", ")
    );
    match &check.evidence {
        Some(ev) => {
            let _ = writeln!(out, ": {}", escape(&ev.message));
            for x in &ev.exchanges {
                let line = format!("{x}");
                let _ = writeln!(out, "  - {}", code(&line));
            }
        }
        None => out.push('\n'),
    }
}

/// A unique `case-...` anchor per case id.
struct Anchors(BTreeMap<String, String>);

impl Anchors {
    fn of(report: &RunReport) -> Anchors {
        let mut used = HashSet::new();
        let mut map = BTreeMap::new();
        for case in &report.cases {
            let base: String = format!("case-{}", case.id)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
                .collect();
            let mut anchor = base.clone();
            let mut n = 2;
            while !used.insert(anchor.clone()) {
                anchor = format!("{base}-{n}");
                n += 1;
            }
            map.insert(case.id.clone(), anchor);
        }
        Anchors(map)
    }

    fn get(&self, id: &str) -> &str {
        self.0.get(id).map_or("", String::as_str)
    }
}

/// Text with Markdown and HTML punctuation escaped, on one line (safe in a table cell).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An inline code span that survives backticks in `text` (not for table cells).
fn code(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    let mut ticks = "`".to_string();
    while text.contains(ticks.as_str()) {
        ticks.push('`');
    }
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    format!("{ticks}{pad}{text}{pad}{ticks}")
}

/// A fenced `text` block longer than any backtick run in `text`.
fn fence(text: &str) -> String {
    let mut ticks = "```".to_string();
    while text.contains(ticks.as_str()) {
        ticks.push('`');
    }
    format!("{ticks}text\n{}\n{ticks}", text.trim_end())
}
