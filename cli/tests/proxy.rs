//! `bulkmock proxy` in front of `bulkmock serve` (a separate process with
//! authorization on, as an outside server would be), the reference client
//! (`bulkmock export`) through it: a clean export equals a direct one byte for
//! byte; every "serve and proxy" fault kind fires through the proxy and the
//! client recovers; tokens pass untouched and never reach the transcript, the
//! record or the logs; a slow upstream reaches the client as it comes.

#[path = "common/proxy.rs"]
mod procs;

use std::path::Path;

use procs::{export, ndjson_files, plan, proxy, transcript, upstream};
use serde_json::Value;

/// The upstream every test starts: 30 patients, files of at most 100 resources.
const UPSTREAM: &[&str] = &["--patients", "30", "--resources-per-file", "100"];

#[test]
fn a_clean_export_through_the_proxy_equals_a_direct_one() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), UPSTREAM);
    let t = dir.path().join("transcript.ndjson");
    let p = proxy(&up.server.fhir_base, &["--transcript", t.to_str().unwrap()], None, &[]);
    assert_ne!(p.fhir_base, up.server.fhir_base);
    assert!(p.fhir_base.ends_with("/fhir"), "the proxy serves the upstream's base path: {}", p.fhir_base);
    for (name, extra) in [("gzip", &[][..]), ("plain", &["--no-gzip"][..])] {
        let (via, direct) = (dir.path().join(format!("via-{name}")), dir.path().join(format!("direct-{name}")));
        let out = export(&up, &p.fhir_base, &via, extra);
        assert!(out.status.success(), "through the proxy: {}", String::from_utf8_lossy(&out.stderr));
        let out = export(&up, &up.server.fhir_base, &direct, extra);
        assert!(out.status.success(), "direct: {}", String::from_utf8_lossy(&out.stderr));
        let (a, b) = (ndjson_files(&via), ndjson_files(&direct));
        assert!(a.len() > 5, "{:?}", a.keys());
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (file, bytes) in &a {
            assert!(bytes == &b[file], "{file} differs through the proxy ({name})");
        }
        // Every URL the client was handed is the proxy's; the manifests agree otherwise.
        let manifest =
            |d: &Path| -> Value { serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap() };
        let (m1, m2) = (manifest(&via), manifest(&direct));
        assert!(m1["request"].as_str().unwrap().starts_with(&p.fhir_base), "{}", m1["request"]);
        let entries = |m: &Value| -> Vec<(String, u64)> {
            m["output"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| (o["type"].as_str().unwrap().to_string(), o["count"].as_u64().unwrap()))
                .collect()
        };
        assert_eq!(entries(&m1), entries(&m2));
        for o in m1["output"].as_array().unwrap() {
            assert!(o["url"].as_str().unwrap().starts_with(&p.origin()), "{o}");
        }
    }
    assert!(p.terminate(), "SIGTERM stops the proxy with exit code 0");
    // gzip went through as gzip; Range was not needed; DELETE reached the upstream.
    let exchanges = transcript(&t);
    let files: Vec<&Value> = exchanges.iter().filter(|e| e["target"] == "file").collect();
    assert!(files.iter().any(|e| e["response"]["content-encoding"] == "gzip"), "gzip is preserved");
    assert!(files.iter().any(|e| e["response"].get("content-encoding").is_none()), "plain stays plain");
    assert!(exchanges.iter().any(|e| e["target"] == "delete" && e["status"] == 202));
    assert!(exchanges.iter().any(|e| e["target"] == "metadata"));
}

/// How a row of the fault table ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ends {
    /// The client finishes with the same files as a clean export.
    Recovers,
    /// The client stops with an error (nothing to recover: the job is gone).
    FailsCleanly,
}

/// Every "serve and proxy" kind of docs/faults.md, through the proxy.
const FAULTS: &[(&str, &str, &[&str], Ends)] = &[
    (
        "respond",
        r#"[[fault]]
on = "status"
times = 2
fault = { kind = "respond", status = 503, body = "transient", retry_after_s = 0 }
[[fault]]
on = "kickoff"
times = 1
fault = { kind = "respond", status = 429, code = "throttled", retry_after_s = 0 }
[[fault]]
on = "file"
times = 1
fault = { kind = "respond", status = 502, body = "html" }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "delay",
        r#"[[fault]]
on = "file"
times = 2
fault = { kind = "delay", delay_ms = 200 }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "truncate",
        r#"[[fault]]
on = "file"
resource_type = "Observation"
times = 1
fault = { kind = "truncate", fraction = 0.5 }"#,
        &["--no-gzip"],
        Ends::Recovers,
    ),
    (
        "truncate at a line end",
        r#"[[fault]]
on = "file"
resource_type = "Observation"
times = 1
fault = { kind = "truncate", fraction = 0.5, at_line_end = true }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "reset",
        r#"[[fault]]
on = "file"
times = 2
fault = { kind = "reset", fraction = 0.5 }
[[fault]]
on = "status"
times = 1
fault = { kind = "reset", after_bytes = 0 }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "drip",
        r#"[[fault]]
on = "file"
file_index = 0
fault = { kind = "drip", bytes_per_s = 200000 }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "stall",
        r#"[[fault]]
on = "file"
times = 1
fault = { kind = "stall", fraction = 0.5, stall_ms = 300 }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "header",
        r#"[[fault]]
on = "status"
fault = { kind = "header", name = "x-progress", value = "odd {n}" }
[[fault]]
on = "kickoff"
fault = { kind = "header", name = "content-location", value = "{other_host}" }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "in_progress",
        r#"[[fault]]
on = "status"
when = { first = 3 }
fault = { kind = "in_progress", retry_after_s = 0, progress = "50%" }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "vanish",
        r#"[[fault]]
on = "status"
when = { nth = 1 }
fault = { kind = "vanish" }"#,
        &[],
        Ends::FailsCleanly,
    ),
    (
        "revoke",
        r#"[[fault]]
on = "file"
when = { nth = 2 }
fault = { kind = "revoke" }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "manifest",
        r#"[[fault]]
on = "status"
fault = { kind = "manifest", variant = "unknown_fields" }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "content",
        r#"[[fault]]
on = "file"
resource_type = "Patient"
fault = { kind = "content", mutation = "crlf" }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "gzip",
        r#"[[fault]]
on = "file"
times = 1
fault = { kind = "gzip", mode = "corrupt" }"#,
        &[],
        Ends::Recovers,
    ),
    (
        "range",
        r#"[[fault]]
on = "file"
resource_type = "Observation"
times = 1
fault = { kind = "truncate", fraction = 0.5 }
[[fault]]
on = "file"
resource_type = "Observation"
fault = { kind = "range", mode = "ignore" }"#,
        &["--no-gzip"],
        Ends::Recovers,
    ),
    (
        "redirect",
        r#"[[fault]]
on = "file"
fault = { kind = "redirect" }
[[fault]]
on = "status"
times = 1
fault = { kind = "redirect", ttl_s = 60 }"#,
        &[],
        Ends::Recovers,
    ),
];

#[test]
fn every_serve_and_proxy_fault_fires_through_the_proxy_and_the_client_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), UPSTREAM);
    let clean = dir.path().join("clean");
    assert!(export(&up, &up.server.fhir_base, &clean, &[]).status.success());
    let expected = ndjson_files(&clean);
    let mut kinds = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for (i, (name, toml, extra, ends)) in FAULTS.iter().enumerate() {
        let file = plan(dir.path(), &format!("plan-{i}.toml"), toml);
        for rule in bulkmock_server::faults::file::parse(toml, name, false).unwrap().rules {
            kinds.insert(rule.fault.kind_name());
        }
        let t = dir.path().join(format!("transcript-{i}.ndjson"));
        let args = ["--admin", "--faults", file.to_str().unwrap(), "--transcript", t.to_str().unwrap()];
        let p = proxy(&up.server.fhir_base, &args, None, &[]);
        let out_dir = dir.path().join(format!("out-{i}"));
        let out = export(&up, &p.fhir_base, &out_dir, extra);
        let rules: Vec<Value> = reqwest_get_json(&format!("{}/_admin/faults", p.origin()));
        p.stop();
        let stderr = String::from_utf8_lossy(&out.stderr);
        for rule in &rules {
            if rule["fired"].as_u64().unwrap_or(0) == 0 {
                failures.push(format!("{name}: rule {} never fired ({stderr})", rule["rule"]));
            }
        }
        if let Err(e) = on_the_wire(name, &transcript(&t)) {
            failures.push(format!("{name}: {e}"));
        }
        match ends {
            Ends::Recovers if !out.status.success() => failures.push(format!("{name}: the client failed: {stderr}")),
            Ends::Recovers if ndjson_files(&out_dir) != expected => {
                failures.push(format!("{name}: the output differs from a clean export"))
            }
            Ends::FailsCleanly if out.status.success() => failures.push(format!("{name}: the client succeeded")),
            Ends::FailsCleanly if !stderr.contains("404") => {
                failures.push(format!("{name}: the client's error does not name the 404: {stderr}"))
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every kind docs/faults.md marks "serve and proxy" is in the table.
    let page = include_str!("../../docs/faults.md");
    let lines: Vec<&str> = page.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(kind) = line.strip_prefix("### `").and_then(|r| r.strip_suffix('`'))
            && lines[i + 2].starts_with("**serve and proxy**")
        {
            assert!(kinds.contains(kind), "{kind} is serve and proxy but not tested through the proxy");
        }
    }
}

/// What some faults must leave in the proxy's transcript besides firing.
fn on_the_wire(name: &str, exchanges: &[Value]) -> Result<(), String> {
    let auth = |e: &Value| e["headers"]["authorization"].as_str().map(str::to_string);
    match name {
        // The revoked token gets 401 from the proxy (from the request that
        // revoked it on, however many of the client's requests were in
        // flight); a new token then works.
        "revoke" => {
            let at = exchanges.iter().position(|e| e["fault"].is_string()).ok_or("no revoke fired")?;
            let revoked = auth(&exchanges[at]);
            let refused = exchanges[at..].iter().any(|e| auth(e) == revoked && e["status"] == 401);
            let renewed = exchanges[at + 1..].iter().any(|e| auth(e) != revoked && e["status"] == 200);
            (refused && renewed).then_some(()).ok_or_else(|| format!("refused {refused}, renewed {renewed}"))
        }
        // Redirected requests arrive with a capability and no token, and succeed.
        "redirect" => {
            let followed: Vec<&Value> =
                exchanges.iter().filter(|e| e["query"].as_str().is_some_and(|q| q.contains("cap="))).collect();
            let ok = !followed.is_empty() && followed.iter().all(|e| auth(e).is_none() && e["status"] == 200);
            ok.then_some(()).ok_or_else(|| format!("followed redirects: {followed:?}"))
        }
        _ => Ok(()),
    }
}

/// A blocking GET of a JSON document (the admin API), on a runtime of its own.
fn reqwest_get_json(url: &str) -> Vec<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().error_for_status().unwrap().json().await.unwrap() })
}

#[test]
fn serve_only_kinds_are_refused_at_start_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = plan(
        dir.path(),
        "plan.toml",
        r#"[[fault]]
on = "file"
fault = { kind = "drip", bytes_per_s = 1000 }
[[fault]]
name = "false jti replay"
on = "token"
fault = { kind = "respond", status = 401, body = "oauth", code = "invalid_client" }
[[fault]]
on = "file"
fault = { kind = "expire_urls" }"#,
    );
    let out = std::process::Command::new(procs::BIN)
        .args(["proxy", "--port", "0", "--upstream", "http://127.0.0.1:9/fhir", "--faults"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plan.toml"), "{stderr}");
    assert!(stderr.contains("rule 2 (false jti replay)") && stderr.contains("token endpoint"), "{stderr}");
    assert!(stderr.contains("rule 3") && stderr.contains("`expire_urls`"), "{stderr}");
    assert!(!stderr.contains("rule 1"), "{stderr}");
    // The admin API refuses such a rule too, and takes the others.
    let p = proxy("http://127.0.0.1:9/fhir", &["--admin"], None, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (refused, taken) = runtime.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("{}/_admin/faults", p.origin());
        let rule = r#"{"on":"token","fault":{"kind":"token_lifetime","lifetime_s":5}}"#;
        let refused = http.post(&url).body(rule).send().await.unwrap();
        let refused = (refused.status().as_u16(), refused.text().await.unwrap());
        let rule = r#"{"on":"file","fault":{"kind":"drip","bytes_per_s":1000}}"#;
        (refused, http.post(&url).body(rule).send().await.unwrap().status().as_u16())
    });
    assert_eq!(refused.0, 400, "{}", refused.1);
    assert!(refused.1.contains("`token_lifetime`") && refused.1.contains("bulkmock serve"), "{}", refused.1);
    assert_eq!(taken, 201);
    let out = std::process::Command::new(procs::BIN)
        .args(["proxy", "--port", "0", "--upstream", "ftp://example/fhir"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream \"ftp://example/fhir\""));
}

#[test]
fn tokens_pass_untouched_and_never_reach_the_transcript_record_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let up_transcript = dir.path().join("upstream.ndjson");
    let mut args = UPSTREAM.to_vec();
    args.extend(["--transcript", up_transcript.to_str().unwrap()]);
    let up = upstream(dir.path(), &args);
    let (t, record, log) =
        (dir.path().join("proxy.ndjson"), dir.path().join("record.ndjson"), dir.path().join("proxy.log"));
    let args = ["--transcript", t.to_str().unwrap(), "--record", record.to_str().unwrap()];
    let p = proxy(&up.server.fhir_base, &args, Some(&log), &[("BULKMOCK_LOG", "trace")]);
    let out = export(&up, &p.fhir_base, &dir.path().join("out"), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A token the test knows: the upstream refuses it, the proxy passes it on as it is.
    const SECRET: &str = "proxy-test-secret-token-4f1c";
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/$export", p.fhir_base))
            .header("Authorization", format!("Bearer {SECRET}"))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 401, "the upstream judged the token itself");
    p.stop();
    up.server.stop();
    for file in [&t, &record, &log] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains(SECRET), "{} holds the token", file.display());
    }
    assert!(std::fs::metadata(&log).unwrap().len() > 0, "trace logging wrote something");
    // Every token the client sent through the proxy reached the upstream unchanged:
    // the same fingerprints on both sides, the secret's among them.
    let fingerprints = |path: &Path| -> std::collections::BTreeSet<String> {
        transcript(path).iter().filter_map(|e| e["headers"]["authorization"].as_str().map(str::to_string)).collect()
    };
    let (via, at_upstream) = (fingerprints(&t), fingerprints(&up_transcript));
    assert!(via.len() >= 2, "the export's token and the secret: {via:?}");
    assert!(via.iter().all(|f| f.starts_with("Bearer <") && !f.contains(SECRET)), "{via:?}");
    assert!(via.is_subset(&at_upstream), "through the proxy {via:?}, at the upstream {at_upstream:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_reaches_the_client_as_it_comes() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let drip = plan(
        dir.path(),
        "drip.toml",
        r#"[[fault]]
on = "file"
fault = { kind = "drip", bytes_per_s = 5000 }"#,
    );
    let args = [
        "--open",
        "--admin",
        "--patients",
        "100",
        "--resources-per-file",
        "100000",
        "--faults",
        drip.to_str().unwrap(),
    ];
    let up = upstream(dir.path(), &args);
    let p = proxy(&up.server.fhir_base, &[], None, &[]);
    let http = reqwest::Client::new();
    let kickoff = http
        .get(format!("{}/$export?_type=Observation", p.fhir_base))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(kickoff.status(), 202);
    let status_url = kickoff.headers()["content-location"].to_str().unwrap().to_string();
    assert!(status_url.starts_with(&p.origin()), "{status_url}");
    let manifest: Value = loop {
        let r = http.get(&status_url).send().await.unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202);
    };
    let url = manifest["output"][0]["url"].as_str().unwrap();
    let response = http.get(url).send().await.unwrap();
    let total = response.content_length().expect("the upstream's length is announced through the proxy");
    assert!(total > 200_000, "a file that takes the upstream seconds to drip: {total} bytes");
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    // The first bytes are here: the upstream has not finished sending (a proxy
    // that held the body until its end could not have sent anything yet).
    let exchanges: Vec<Value> =
        http.get(format!("{}/_admin/transcript", up.server.origin())).send().await.unwrap().json().await.unwrap();
    let file = exchanges.iter().rfind(|e| e["target"] == "file").expect("the upstream served the file");
    let sent = file["bytes"].as_u64().unwrap();
    assert!(sent < total, "the upstream had sent {sent} of {total} bytes when the client got its first bytes");
}

/// An upstream base with the SMART reference server's settings in its path
/// (`/{base64url JSON}/fhir`, which `serve` accepts too): the proxy keeps the
/// path, its discovery names the upstream's prefixed token endpoint, and the
/// export equals one straight from that base.
#[test]
fn reference_server_settings_urls_keep_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path(), UPSTREAM);
    // {"dur":0,"page":200,"tlt":15}
    const SETTINGS: &str = "eyJkdXIiOjAsInBhZ2UiOjIwMCwidGx0IjoxNX0";
    let base = up.server.fhir_base.replacen("/fhir", &format!("/{SETTINGS}/fhir"), 1);
    let p = proxy(&base, &[], None, &[]);
    assert!(p.fhir_base.ends_with(&format!("/{SETTINGS}/fhir")), "{}", p.fhir_base);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let discovery: Value = runtime.block_on(async {
        reqwest::get(format!("{}/.well-known/smart-configuration", p.fhir_base)).await.unwrap().json().await.unwrap()
    });
    assert_eq!(discovery["token_endpoint"], format!("{}/{SETTINGS}/auth/token", up.server.origin()));
    let (via, direct) = (dir.path().join("via"), dir.path().join("direct"));
    let out = export(&up, &p.fhir_base, &via, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(export(&up, &base, &direct, &[]).status.success());
    assert_eq!(ndjson_files(&via), ndjson_files(&direct));
    let manifest = std::fs::read_to_string(via.join("manifest.json")).unwrap();
    assert!(manifest.contains(&format!("{}/{SETTINGS}/fhir/", p.origin())), "{manifest}");
}

/// HTTPS on both sides: an upstream `serve --tls`, the proxy trusting its CA
/// (`--upstream-ca-cert`) and serving `--tls` itself (the same local CA, in the
/// same state folder), the client trusting that CA. Every URL it is handed is https.
#[test]
fn https_upstream_and_https_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = UPSTREAM.to_vec();
    args.push("--tls");
    let up = upstream(dir.path(), &args);
    assert!(up.server.fhir_base.starts_with("https://"), "{}", up.server.fhir_base);
    let state = dir.path().join("upstream-state");
    let ca = state.join("tls").join("ca.pem");
    let proxy_args = ["--tls", "--state-dir", state.to_str().unwrap(), "--upstream-ca-cert", ca.to_str().unwrap()];
    let p = proxy(&up.server.fhir_base, &proxy_args, None, &[]);
    assert!(p.fhir_base.starts_with("https://"), "{}", p.fhir_base);
    let (via, direct) = (dir.path().join("via"), dir.path().join("direct"));
    let out = export(&up, &p.fhir_base, &via, &["--ca-cert", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(export(&up, &up.server.fhir_base, &direct, &["--ca-cert", ca.to_str().unwrap()]).status.success());
    assert_eq!(ndjson_files(&via), ndjson_files(&direct));
    let manifest = std::fs::read_to_string(via.join("manifest.json")).unwrap();
    assert!(manifest.contains(&format!("{}/fhir/bulkfiles/", p.origin())), "{manifest}");
    // Without the upstream's CA the proxy cannot reach it, and says so.
    let q = proxy(&up.server.fhir_base, &[], None, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, body) = runtime.block_on(async {
        let r = reqwest::get(format!("{}/metadata", q.fhir_base)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("did not answer") && body.contains("certificate"), "{body}");
}
