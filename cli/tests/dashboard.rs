//! The live dashboard in a real browser: `bulkmock serve` with its dashboard,
//! headless Chromium on the page (DevTools protocol, `common/cdp.rs`), and the
//! reference client (`bulkmock export`) running an export meanwhile. The
//! token, the kick-off, the polls and the files appear in the timeline in
//! order without a reload; the live checks show the client; a fault rule
//! added through the page's form fires on the next request and shows in the
//! timeline; a rule the plan parser refuses shows its error; after 10,000
//! more exchanges the page holds at most `MAX_ROWS` rows and says so; and the
//! page logs not one console message (no error, no CSP violation).
//!
//! Skipped with a note when no `chromium` is on PATH (set
//! `BULKMOCK_REQUIRE_CHROMIUM=1` to fail instead).
//! `BULKMOCK_DASHBOARD_SCREENSHOT=FILE` saves a screenshot taken after the
//! export (the one in docs/dashboard.png).

mod common {
    pub mod cdp;
}

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::cdp::{Browser, chromium};
use futures_util::StreamExt;
use serde_json::json;

/// A running `bulkmock serve`; killed on drop.
struct Serve {
    child: Child,
    banner: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(state_dir: &std::path::Path) -> Serve {
        Serve::with(state_dir, &["--patients", "12", "--job-duration", "1500ms", "--seed", "5"])
    }

    fn with(state_dir: &std::path::Path, args: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
            .args(["serve", "--port", "0"])
            .args(args)
            .arg("--state-dir")
            .arg(state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut banner = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Press Ctrl-C");
            banner.push(line);
            if done {
                break;
            }
        }
        Serve { child, banner }
    }

    /// The value of a banner line `  name:  value`.
    fn line(&self, name: &str) -> String {
        let prefix = format!("{name}:");
        let line = self.banner.iter().find_map(|l| l.trim().strip_prefix(&prefix)).unwrap_or_else(|| {
            panic!("the banner has a {name} line: {:#?}", self.banner);
        });
        line.trim().to_string()
    }
}

#[tokio::test]
async fn serve_scenario_shows_the_case_on_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::with(&dir.path().join("state"), &["--scenario", "builtin:status/job-vanishes"]);
    let title = serve.line("title");
    let url = serve.line("dashboard");
    let url = url.split_whitespace().next().unwrap();
    let state: serde_json::Value = reqwest::get(format!("{url}/api/state")).await.unwrap().json().await.unwrap();
    let scenario = &state["scenario"];
    assert_eq!(scenario["title"], title.as_str());
    assert_eq!(scenario["id"], "status/job-vanishes");
    assert!(!scenario["faults"].as_array().unwrap().is_empty(), "the case's faults: {scenario}");
    assert!(scenario["expect"]["outcome"].is_string(), "its expectations: {scenario}");
    let checks: serde_json::Value = reqwest::get(format!("{url}/api/checks")).await.unwrap().json().await.unwrap();
    assert_eq!(checks["available"], true, "the binary installs the live checks");
}

/// `[seq, target, fault]` of every row on the page, in order of arrival.
const ROWS: &str = "[...document.querySelectorAll('#timeline .row')]\
    .map(r => [Number(r.dataset.seq), r.dataset.target, r.dataset.fault || null])\
    .sort((a, b) => a[0] - b[0])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_an_export_live_and_its_form_adds_a_fault_that_fires() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("BULKMOCK_REQUIRE_CHROMIUM").is_none(),
            "BULKMOCK_REQUIRE_CHROMIUM: no chromium on PATH"
        );
        eprintln!("skipped: no chromium on PATH (apt-get install chromium) to open the dashboard in");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("state"));
    let fhir_base = serve.line("FHIR base");
    let dashboard = serve.line("dashboard");
    let url = dashboard.split_whitespace().next().unwrap().to_string();
    assert!(url.ends_with("/_dashboard") && url.starts_with("http://127.0.0.1:"), "{dashboard}");
    assert!(dashboard.contains("loopback only"), "{dashboard}");
    let key = serve.line("client key");
    let key = key.split(" (").next().unwrap().to_string();

    let mut browser = Browser::launch(&chromium).await;
    // The console capture works: a probe message is seen (then forgotten).
    browser.eval("console.error('bulkmock-probe')").await;
    browser.eval("1").await;
    assert!(browser.console.iter().any(|l| l.contains("bulkmock-probe")), "console capture: {:?}", browser.console);
    browser.console.clear();

    browser.open(&url).await;
    browser.wait_for("document.getElementById('conn').textContent === 'live'", "the live badge").await;
    // Set once: still there at the end means the page never reloaded.
    browser.eval("window.bulkmockMarker = 'no reload'").await;

    // The reference client runs an export while the page watches.
    let out = dir.path().join("out");
    let export = tokio::process::Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["export", "--patient", "--fhir-url", &fhir_base, "--client-id", "bulkmock-demo", "--key", &key])
        .arg("--out")
        .arg(&out)
        .output()
        .await
        .unwrap();
    assert!(export.status.success(), "the export: {}", String::from_utf8_lossy(&export.stderr));

    let rows = browser
        .wait_for(
            &format!("(() => {{ const r = {ROWS}; return r.some(x => x[1] === 'delete') && r; }})()"),
            "the DELETE",
        )
        .await;
    let rows = rows.as_array().unwrap();
    let first = |target: &str| rows.iter().position(|r| r[1] == target);
    let (token, kickoff, status, file) = (first("token"), first("kickoff"), first("status"), first("file"));
    assert!(token.is_some() && kickoff.is_some() && status.is_some() && file.is_some(), "{rows:?}");
    assert!(token < kickoff && kickoff < status && status < file, "in order: {rows:?}");
    let polls = rows.iter().filter(|r| r[1] == "status").count();
    assert!(polls >= 2, "a 1.5 s job needs more than one poll: {rows:?}");
    let shown = browser
        .eval(
            "(() => { const t = document.getElementById('timeline').textContent; \
             return [t.includes('answered Retry-After'), t.includes('waited '), /bytes \\d+ of \\d+/.test(t), \
                     t.includes('\"alg\"'), t.includes('\"jti\"')]; })()",
        )
        .await;
    assert_eq!(shown, json!([true, true, true, true, true]), "Retry-After, waits, bytes of total, assertion");
    let text = browser.eval("document.body.textContent").await;
    assert!(!text.as_str().unwrap().contains("client_assertion"), "the assertion itself is never shown");

    // The live checks show the client, with the transcript to download.
    // The checks follow the client: once its files are in, the file and polling checks pass.
    let verdicts = "(() => { const d = document.querySelector('#checks details[data-client=\"bulkmock-demo\"]'); \
        if (!d) return null; const v = {}; \
        for (const tr of d.querySelectorAll('tr')) { const td = tr.querySelectorAll('td'); \
          if (td.length) v[td[0].textContent] = td[2].textContent; } \
        return v; })()";
    let wanted = ["auth.fresh_jti", "status.honours_retry_after", "files.token_when_required", "files.accept_gzip"];
    let condition = format!(
        "(() => {{ const v = {verdicts}; return v && {} && v; }})()",
        wanted.map(|id| format!("v['{id}'] === 'pass'")).join(" && ")
    );
    let all = browser.wait_for(&condition, "the client's checks passing").await;
    assert!(all.as_object().unwrap().values().all(|v| v != "fail"), "the reference client fails no live check: {all}");
    let checks =
        browser.eval("document.querySelector('#checks details[data-client=\"bulkmock-demo\"]').textContent").await;
    assert!(checks.as_str().unwrap().contains("download transcript"), "{checks}");
    let link = browser.eval("document.querySelector('#checks details[data-client=\"bulkmock-demo\"] a').href").await;
    let transcript = reqwest::get(link.as_str().unwrap()).await.unwrap().text().await.unwrap();
    let lines: Vec<bulkmock_server::Exchange> = transcript.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 5, "the client's transcript: {} exchanges", lines.len());
    let demo = |e: &bulkmock_server::Exchange| e.client_id.as_deref() == Some("bulkmock-demo");
    assert!(lines.iter().all(|e| demo(e) || e.client_id.is_none()), "its exchanges, and those without a client");
    assert!(lines.iter().any(|e| e.client_id.is_none()), "the discovery request before its token");
    assert!(lines.iter().all(|e| !e.headers.contains_key("authorization") || demo(e)));
    assert!(all["auth.discovery"] == "pass", "discovery before the token counts for the client: {all}");
    browser
        .wait_for("document.querySelector('#jobs details') && document.querySelector('#jobs').textContent.includes('deleted')", "the deleted job")
        .await;
    if let Some(path) = std::env::var_os("BULKMOCK_DASHBOARD_SCREENSHOT") {
        std::fs::write(path, browser.screenshot().await).unwrap();
    }

    // A rule the plan parser refuses shows the parser's message.
    browser
        .eval("document.getElementById('fault-text').value = '[[fault]]\\non = \"metadata\"\\nfault = { kind = \"explode\" }'")
        .await;
    browser.eval("document.getElementById('fault-add').click()").await;
    let error = browser
        .wait_for(
            "!document.getElementById('fault-error').hidden && document.getElementById('fault-error').textContent",
            "the error",
        )
        .await;
    assert!(error.as_str().unwrap().starts_with("rule:3:"), "{error}");

    // A rule added through the form fires on the next request, and the timeline shows it.
    let rule = "[[fault]]\\nname = \"from the form\"\\non = \"metadata\"\\ntimes = 1\\nfault = { kind = \"respond\", status = 503, retry_after_s = 1 }";
    browser.eval(&format!("document.getElementById('fault-text').value = '{rule}'")).await;
    browser.eval("document.getElementById('fault-add').click()").await;
    browser
        .wait_for("document.getElementById('faults').textContent.includes('from the form')", "the new rule in the plan")
        .await;
    let next = reqwest::get(format!("{fhir_base}/metadata")).await.unwrap();
    assert_eq!(next.status(), 503, "the rule fires on the next request");
    browser
        .wait_for("document.querySelector('#timeline .row[data-fault=\"from the form\"]')", "the fault in the timeline")
        .await;
    browser
        .wait_for("/matched\\s*fired/.test(document.getElementById('faults').textContent) && document.querySelector('#faults td:nth-child(4)').textContent === '1'", "the rule's counter")
        .await;

    // 10,000 more exchanges: the page keeps at most MAX_ROWS rows, and says so.
    let http = reqwest::Client::new();
    let discovery = format!("{fhir_base}/.well-known/smart-configuration");
    futures_util::stream::iter(0..10_000)
        .map(|_| {
            let (http, url) = (http.clone(), discovery.clone());
            async move { http.get(&url).send().await.unwrap().bytes().await.unwrap() }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let total = lines.len(); // at least; the server's count follows
    let state: serde_json::Value = reqwest::get(format!("{url}/api/state")).await.unwrap().json().await.unwrap();
    let exchanges = state["exchanges"].as_u64().unwrap();
    assert!(exchanges >= 10_000 + total as u64);
    let max_rows = bulkmock_server::dashboard::MAX_ROWS;
    let shown = browser
        .wait_for(
            &format!(
                "(() => {{ const r = {ROWS}; const lag = !document.getElementById('lag').hidden; \
                 return (lag || (r.length && r[r.length - 1][0] === {exchanges})) && [r.length, lag]; }})()"
            ),
            "the last exchange (or that it fell behind)",
        )
        .await;
    let rows = shown[0].as_u64().unwrap() as usize;
    assert!(rows <= max_rows, "{rows} rows kept, at most {max_rows}");
    assert_eq!(rows, max_rows, "and no fewer while there are more");
    let bound = browser
        .eval("document.getElementById('bound').hidden ? '' : document.getElementById('bound').textContent")
        .await;
    assert!(bound.as_str().unwrap().contains(&format!("keeps at most {max_rows} rows")), "{bound}");
    assert_eq!(browser.eval("window.bulkmockMarker").await, "no reload");

    browser.eval("1").await;
    assert!(browser.console.is_empty(), "the page logs nothing: {:#?}", browser.console);
}
