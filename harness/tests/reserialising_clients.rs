//! Clients that parse every line and write it back (issue 19, Deliver 7): the
//! reference client wrapped, its output folder rewritten after it finishes.
//! Re-serialising with other spacing, key order and string escapes keeps the
//! data: every check must judge such a client exactly as it judges the
//! reference client. Rewriting `15.0` as `15` (a JavaScript client's
//! `JSON.parse` / `JSON.stringify`) keeps every value but loses a decimal's
//! precision: `output.decimal_precision` warns, naming resource, element and
//! both spellings, and nothing else changes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bulkmock_harness::adapter::{Builtin, CaseContext, ClientAdapter, from_fn};
use bulkmock_harness::checks::Verdict;
use bulkmock_harness::report::{CaseResult, CaseVerdict};
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::scenario;

/// A JSON value with each number's text kept as written.
#[derive(Debug, Clone)]
enum Json {
    Literal(String),
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// A small JSON reader that keeps numbers as text (serde_json would round them through `f64`).
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn parse(text: &str) -> Json {
        let mut r = Reader { text, at: 0 };
        r.value()
    }

    fn peek(&mut self) -> u8 {
        while self.text.as_bytes()[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
        self.text.as_bytes()[self.at]
    }

    fn value(&mut self) -> Json {
        match self.peek() {
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                while self.peek() != b'}' {
                    let Json::Str(key) = self.string() else { unreachable!() };
                    assert_eq!(self.peek(), b':');
                    self.at += 1;
                    members.push((key, self.value()));
                    if self.peek() == b',' {
                        self.at += 1;
                    }
                }
                self.at += 1;
                Json::Object(members)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek() != b']' {
                    items.push(self.value());
                    if self.peek() == b',' {
                        self.at += 1;
                    }
                }
                self.at += 1;
                Json::Array(items)
            }
            b'"' => self.string(),
            _ => {
                let start = self.at;
                while self.at < self.text.len() && !b",]} \t\r\n".contains(&self.text.as_bytes()[self.at]) {
                    self.at += 1;
                }
                let token = self.text[start..self.at].to_string();
                if token.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) {
                    Json::Number(token)
                } else {
                    Json::Literal(token)
                }
            }
        }
    }

    fn string(&mut self) -> Json {
        let start = self.at;
        self.at += 1;
        loop {
            match self.text.as_bytes()[self.at] {
                b'\\' => self.at += 2,
                b'"' => break,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        Json::Str(serde_json::from_str(&self.text[start..self.at]).expect("a JSON string"))
    }
}

/// How a client writes each line back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    /// Spaces everywhere, members in reverse order, `\/`, `\uXXXX` for every
    /// non-ASCII character and for `-`; numbers exactly as read.
    Reserialise,
    /// `JSON.stringify(JSON.parse(line))`: compact, same order, numbers as
    /// JavaScript writes them (`15.0` -> `15`, `12.30` -> `12.3`).
    JavaScript,
}

fn write(v: &Json, style: Style, out: &mut String) {
    let spaced = style == Style::Reserialise;
    match v {
        Json::Literal(t) => out.push_str(t),
        Json::Number(t) => out.push_str(&match style {
            Style::Reserialise => t.clone(),
            Style::JavaScript => javascript_number(t),
        }),
        Json::Str(s) => write_string(s, style, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(if spaced { " , " } else { "," });
                }
                write(item, style, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push_str(if spaced { "{ " } else { "{" });
            let ordered: Vec<&(String, Json)> =
                if spaced { members.iter().rev().collect() } else { members.iter().collect() };
            for (i, (k, item)) in ordered.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(if spaced { ",\t" } else { "," });
                }
                write_string(k, style, out);
                out.push_str(if spaced { " : " } else { ":" });
                write(item, style, out);
            }
            out.push_str(if spaced { " }" } else { "}" });
        }
    }
}

fn write_string(s: &str, style: Style, out: &mut String) {
    if style == Style::JavaScript {
        out.push_str(&serde_json::to_string(s).unwrap());
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '-' => out.push_str("\\u002d"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A decimal as JavaScript prints the `Number` it parses to: trailing zeros of the fraction dropped.
fn javascript_number(text: &str) -> String {
    match text.split_once('.') {
        Some((int, frac)) if !text.contains(['e', 'E']) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") }
        }
        _ => text.to_string(),
    }
}

/// Rewrites every `*.ndjson` under `dir`, line by line; returns the lines whose bytes changed.
fn rewrite_folder(dir: &Path, style: Style) -> std::io::Result<u64> {
    let mut changed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            changed += rewrite_folder(&path, style)?;
            continue;
        }
        if path.extension().is_none_or(|x| x != "ndjson") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let mut out = String::with_capacity(text.len() * 2);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let before = out.len();
            write(&Reader::parse(line), style, &mut out);
            changed += u64::from(out[before..] != *line);
            out.push('\n');
        }
        std::fs::write(&path, out)?;
    }
    Ok(changed)
}

/// The reference client, its output rewritten in `style` once it succeeds.
fn rewriting(style: Style) -> impl ClientAdapter {
    from_fn(&format!("{style:?}"), move |ctx: CaseContext| async move {
        let run = Builtin::default().run(&ctx).await;
        match run.exit_code {
            Some(0) => {
                let changed = rewrite_folder(&ctx.out_dir, style).map_err(|e| e.to_string())?;
                if changed == 0 {
                    return Err("nothing was rewritten: the test would prove nothing".into());
                }
                Ok(0)
            }
            code => Err(format!("the reference client ended with {code:?}: {}", run.stderr)),
        }
    })
}

async fn run_one(text: &str, adapter: Arc<dyn ClientAdapter>) -> CaseResult {
    let file = scenario::parse(text, Path::new("scenarios/selftest/case.toml")).expect("a valid scenario");
    let options = RunOptions { jobs: 1, ..RunOptions::default() };
    let report = runner::run(file.cases, adapter, &options, &|_| {}).await.expect("the run starts");
    report.cases.into_iter().next().expect("one case")
}

fn verdicts(case: &CaseResult) -> BTreeMap<String, Verdict> {
    case.checks.iter().map(|c| (c.id.clone(), c.verdict)).collect()
}

/// Observations only (their `valueQuantity.value` is written with one decimal, so some end in `.0`).
const OBSERVATIONS: &str = "title = \"self-test\"\n[server]\npatients = 6\n[client]\nlevel = \"patient\"\n\
    types = [\"Patient\", \"Observation\"]\n[expect]\npoll_floor_ms = 100\nmax_seconds = 20\n";

/// A patient-level folder kept up to date over incremental runs (updates and deletions).
const INCREMENTAL: &str = "title = \"self-test\"\n[server]\npatients = 20\n[client]\nlevel = \"patient\"\n\
    [incremental]\nrevisions = 4\n[expect]\npoll_floor_ms = 100\nmax_seconds = 20\n";

/// Every check judges `client` exactly as the reference client, except those in `differ`.
async fn judged_like_the_reference(scenario: &str, client: Style, differ: &[(&str, Verdict)]) -> CaseResult {
    let reference = run_one(scenario, Arc::new(Builtin::default())).await;
    assert_eq!(reference.verdict, CaseVerdict::Pass, "the reference client passes: {:#?}", reference.checks);
    let rewritten = run_one(scenario, Arc::new(rewriting(client))).await;
    let mut expected = verdicts(&reference);
    for (id, verdict) in differ {
        expected.insert(id.to_string(), *verdict);
    }
    assert_eq!(verdicts(&rewritten), expected, "{client:?}: {:#?}", rewritten.checks);
    rewritten
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reserialises_every_line_is_judged_like_the_reference() {
    let case = judged_like_the_reference(OBSERVATIONS, Style::Reserialise, &[]).await;
    assert_eq!(case.verdict, CaseVerdict::Pass);
    let checks = verdicts(&case);
    assert_eq!(checks["output.matches_export"], Verdict::Pass);
    assert_eq!(checks["output.decimal_precision"], Verdict::Pass, "the decimals were exercised and kept");
    assert!(case.outcome.output.decimal_resources > 0);
    assert_eq!(case.outcome.output.resources, case.outcome.output.expected_resources);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserialised_state_kept_up_to_date_is_judged_like_the_reference() {
    let case = judged_like_the_reference(INCREMENTAL, Style::Reserialise, &[]).await;
    assert_eq!(case.verdict, CaseVerdict::Pass);
    let checks = verdicts(&case);
    assert_eq!(checks["output.matches_export"], Verdict::Pass);
    assert_eq!(checks["output.deleted_not_added"], Verdict::Pass, "deletions were exercised and applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_trailing_decimal_zeros_warns_on_precision_only() {
    let case =
        judged_like_the_reference(OBSERVATIONS, Style::JavaScript, &[("output.decimal_precision", Verdict::Warn)])
            .await;
    assert_eq!(case.verdict, CaseVerdict::Warn);
    let precision = case.checks.iter().find(|c| c.id == "output.decimal_precision").unwrap();
    // No Bulk Data requirement speaks of a decimal's spelling; the evidence names FHIR R4's rule.
    assert!(precision.requirements.is_empty(), "{:?}", precision.requirements);
    let message = &precision.evidence.as_ref().expect("evidence").message;
    let output = &case.outcome.output;
    assert!(output.precision_lost > 0 && !output.precision_examples.is_empty(), "{output:?}");
    for example in &output.precision_examples {
        assert!(example.resource.starts_with("Observation/"), "{example:?}");
        assert_eq!(example.path, "valueQuantity.value");
        assert!(example.expected.ends_with(".0"), "{example:?}");
        assert_eq!(example.found, example.expected.trim_end_matches(".0"));
        let named = format!("{} {}: {} written {}", example.resource, example.path, example.expected, example.found);
        assert!(message.contains(&named), "{message}");
    }
    assert!(message.contains("FHIR R4"), "{message}");
    assert_eq!((output.missing, output.extra, output.duplicated, output.corrupted), (0, 0, 0, 0));
}

#[test]
fn the_rewriters_keep_numbers_and_change_only_what_they_say() {
    let line = r#"{"resourceType":"Observation","id":"o-1","valueQuantity":{"value":15.0,"unit":"é/h"},"n":[12.30,7]}"#;
    let mut out = String::new();
    write(&Reader::parse(line), Style::Reserialise, &mut out);
    assert_eq!(
        out,
        r#"{ "n" : [12.30 , 7],	"valueQuantity" : { "unit" : "\u00e9\/h",	"value" : 15.0 },	"id" : "o\u002d1",	"resourceType" : "Observation" }"#
    );
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(line).unwrap(), serde_json::from_str(&out).unwrap());
    assert_eq!(a, b);
    out.clear();
    write(&Reader::parse(line), Style::JavaScript, &mut out);
    assert_eq!(
        out,
        r#"{"resourceType":"Observation","id":"o-1","valueQuantity":{"value":15,"unit":"é/h"},"n":[12.3,7]}"#
    );
}
