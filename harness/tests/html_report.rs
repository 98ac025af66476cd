//! The HTML report in a real headless browser (Chromium): a report of real
//! cases (the reference client on two scenarios, plus a deliberately broken
//! client whose stderr holds markup) loads without a single console message,
//! and the "failed only" filter, switched on by a real click through the
//! `#failed-only` fragment, hides every passed case and its matrix column;
//! "MUST only" hides every SHOULD and MAY row.
//!
//! Skipped with a note when no `chromium` is on PATH (set
//! `BULKMOCK_REQUIRE_CHROMIUM=1` to fail instead). `BULKMOCK_HTML_SAMPLE=FILE`
//! also writes the page there (the docs' screenshot is taken from it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulkmock_harness::adapter::{Builtin, CaseContext, from_fn};
use bulkmock_harness::report::{CaseVerdict, RunReport, Suite, html};
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::scenario;

/// What the broken client prints on stderr: markup that must stay text.
const HOSTILE: &str = "<script>console.error('injected')</script><img src=x onerror=console.error('img')>";

/// Two cases of one scenario for the broken client: a kick-off, then exit 0
/// without any output; and exit 1 with markup on stderr.
const BROKEN: &str = r#"title = "A client that writes nothing fails the output check"
description = "mode ${mode}"
requirements = ["CLI-092"]
[server]
patients = 3
auth = false
[client]
level = "patient"
[expect]
max_seconds = 20
[matrix]
mode = ["silent", "noisy"]
"#;

/// The report: the reference client on two scenarios of the library, plus the broken client.
async fn report() -> RunReport {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files =
        scenario::load_paths(&[root.join("happy/patient-export.toml"), root.join("files/truncated-at-line-end.toml")])
            .expect("library scenarios");
    let options = RunOptions { jobs: 4, ..RunOptions::default() };
    let cases: Vec<scenario::Case> = files.into_iter().flat_map(|f| f.cases).collect();
    let mut suite = cases.clone();
    let good = runner::run(cases, Arc::new(Builtin::default()), &options, &|_| {}).await.expect("the run starts");

    let broken = scenario::parse(BROKEN, Path::new("scenarios/selftest/writes-nothing.toml")).expect("valid");
    let client = from_fn("broken", |ctx: CaseContext| async move {
        if ctx.case_id.contains("noisy") {
            return Err(HOSTILE.to_string());
        }
        // Starts the export (so there is one to compare with), then writes nothing.
        let kickoff = reqwest::Client::new()
            .get(format!("{}/Patient/$export", ctx.fhir_base))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(if kickoff.status() == 202 { 0 } else { 1 })
    });
    suite.extend(broken.cases.iter().cloned());
    let bad = runner::run(broken.cases, Arc::new(client), &options, &|_| {}).await.expect("the run starts");

    let cases = good.cases.into_iter().chain(bad.cases).collect();
    let mut report =
        RunReport::new(options.seed, "builtin; selftest/ cases: a deliberately broken client".into(), cases);
    report.suite = Some(Suite::of(&suite));
    report
}

/// The first `chromium` (or `chromium-browser`) on PATH.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Loads `url` in headless Chromium: the DOM after load, and the console
/// messages (`INFO:CONSOLE` log lines; Chromium logs every console message,
/// uncaught error and CSP violation there).
async fn load(chromium: &Path, url: &str) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().expect("a profile folder");
    let mut command = tokio::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium finishes within two minutes")
        .expect("chromium starts");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&output.stdout).into_owned(), console)
}

/// The opening tags starting with `prefix` in a dumped DOM.
fn tags<'a>(dom: &'a str, prefix: &str) -> Vec<&'a str> {
    dom.match_indices(prefix).map(|(at, _)| &dom[at..at + dom[at..].find('>').unwrap_or(0)]).collect()
}

fn hidden(tag: &str) -> bool {
    tag.contains(" hidden=\"\"") || tag.contains(" hidden ") || tag.ends_with(" hidden")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_loads_cleanly_and_failed_only_hides_passed_cases() {
    let report = report().await;
    let verdicts: Vec<CaseVerdict> = report.cases.iter().map(|c| c.verdict).collect();
    assert!(verdicts.contains(&CaseVerdict::Pass), "some case passes: {verdicts:?}");
    assert!(verdicts.iter().filter(|v| **v == CaseVerdict::Fail).count() >= 2, "the broken cases fail: {verdicts:?}");
    let noisy = report.cases.iter().find(|c| c.id.contains("noisy")).expect("the noisy case");
    assert!(noisy.outcome.stderr_tail.contains("<script>"), "the hostile stderr reached the report");

    let page = html::render(&report);
    // Self-contained, and the client's markup stays text.
    assert_eq!(page.matches("<script").count(), 1, "only the page's own script");
    for fetch in [" src=\"", " href=\"http", "<link", "url(", "@import", "<img", "<iframe"] {
        assert!(!page.contains(fetch), "the page must fetch nothing: {fetch}");
    }
    assert!(page.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    assert!(page.contains("&lt;script&gt;console.error(&#39;injected&#39;)&lt;/script&gt;&lt;img src=x"));
    for needle in ["output.matches_export", "MUST checks passed", "SHOULD checks passed", "fault that fired"] {
        assert!(page.contains(needle), "the page shows {needle}");
    }

    let dir = tempfile::tempdir().expect("a folder");
    let file = dir.path().join("report.html");
    std::fs::write(&file, &page).expect("the page is written");
    if let Some(sample) = std::env::var_os("BULKMOCK_HTML_SAMPLE") {
        std::fs::write(sample, &page).expect("the sample is written");
    }
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("BULKMOCK_REQUIRE_CHROMIUM").is_none(),
            "BULKMOCK_REQUIRE_CHROMIUM: no chromium on PATH"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium) to load the HTML report in");
        return;
    };

    // The console capture works: a probe page's message is seen.
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, "<!DOCTYPE html><title>p</title><script>console.error('bulkmock-probe')</script>")
        .expect("the probe is written");
    let (_, console) = load(&chromium, &format!("file://{}", probe.display())).await;
    assert!(console.iter().any(|l| l.contains("bulkmock-probe")), "console capture must work: {console:?}");

    let url = format!("file://{}", file.display());
    let passed = report.cases.iter().filter(|c| c.verdict == CaseVerdict::Pass).count();
    let total = report.cases.len();

    // Unfiltered: nothing hidden, not one console message (no error, no CSP violation).
    let (dom, console) = load(&chromium, &url).await;
    assert!(console.is_empty(), "the page logs nothing: {console:#?}");
    let cases = tags(&dom, "<details class=\"case ");
    assert_eq!(cases.len(), total, "every case is in the DOM");
    assert!(cases.iter().all(|t| !hidden(t)), "no filter, nothing hidden: {cases:#?}");
    assert!(dom.contains(&format!("{total} of {total} cases shown")), "the script ran");

    // Failed only (a real click on the checkbox, made by the page's script from the fragment).
    let (dom, console) = load(&chromium, &format!("{url}#failed-only")).await;
    assert!(console.is_empty(), "the page logs nothing: {console:#?}");
    for tag in tags(&dom, "<details class=\"case ") {
        let pass = tag.contains("data-verdict=\"pass\"");
        assert_eq!(hidden(tag), pass, "failed only hides exactly the passed cases: {tag}");
    }
    let heads = tags(&dom, "<th class=\"c\"");
    assert_eq!(heads.len(), total, "one matrix column per case");
    assert_eq!(heads.iter().filter(|t| hidden(t)).count(), passed, "their matrix columns are hidden too");
    assert!(dom.contains(&format!("{} of {total} cases shown", total - passed)));

    // MUST only: SHOULD and MAY rows (matrix and checks) are hidden, MUST rows stay.
    let (dom, console) = load(&chromium, &format!("{url}#must-only")).await;
    assert!(console.is_empty(), "the page logs nothing: {console:#?}");
    let rows: Vec<&str> = [tags(&dom, "<tr data-level="), tags(&dom, "<tr class=\"check")].concat();
    assert!(rows.iter().any(|t| !t.contains("\"MUST\"")), "the report has SHOULD or MAY rows");
    for row in rows {
        assert_eq!(
            hidden(row),
            !row.contains("data-level=\"MUST\""),
            "MUST only hides exactly the other levels: {row}"
        );
    }
}
