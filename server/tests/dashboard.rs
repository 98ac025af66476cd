//! The live dashboard (`/_dashboard`) over real sockets: the page and its
//! CSP, the guard (the admin secret, the header every change needs), the
//! controls (fault rules in plan-file syntax, switching, deleting, the
//! revision, the transcript), the event stream in order, and memory under a
//! long run: 10,000 exchanges with a page that never reads and a subscriber
//! that never receives, the server's queue bounded by the channel's capacity,
//! a page connecting late sent only the latest rows.

use std::time::Duration;

use bulkmock_server::config::{AdminConfig, ServerConfig};
use bulkmock_server::dashboard::MAX_ROWS;
use bulkmock_server::transcript::{EVENT_CAPACITY, Exchange, TranscriptEvent};
use bulkmock_server::{MockServer, faults};
use futures_util::StreamExt;
use serde_json::Value;

fn origin(server: &MockServer) -> String {
    server.fhir_base().trim_end_matches("/fhir").to_string()
}

async fn open_dashboard() -> MockServer {
    MockServer::builder()
        .open()
        .patients(3)
        .job_duration(Duration::ZERO)
        .count_before_accepting()
        .dashboard()
        .start()
        .await
}

/// Reads server-sent events from a response, one `(name, data)` at a time.
struct Events {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    async fn connect(server: &MockServer) -> Events {
        let response = reqwest::get(format!("{}/_dashboard/events", origin(server))).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events { body: Box::pin(response.bytes_stream()), buffer: String::new() }
    }

    /// The next event that is not a keep-alive comment.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name.is_empty() {
                    continue;
                }
                return (name, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("an event within 30 s")
                .expect("the stream stays open")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events up to and including the first called `name`.
    async fn until(&mut self, name: &str) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.0 == name;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn the_page_is_off_by_default_and_served_with_a_strict_csp() {
    let plain = MockServer::builder().open().patients(1).start().await;
    assert_eq!(reqwest::get(format!("{}/_dashboard", origin(&plain))).await.unwrap().status(), 404);

    let server = open_dashboard().await;
    let page = reqwest::get(format!("{}/_dashboard", origin(&server))).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("data-max-rows=\"{MAX_ROWS}\"")));
    assert_eq!(server.request_count(), 0, "the dashboard's own requests are not in the transcript");

    // Another site's name pointed at 127.0.0.1 (DNS rebinding) is refused.
    let rebound = reqwest::Client::new()
        .get(format!("{}/_dashboard/api/state", origin(&server)))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
}

#[tokio::test]
async fn the_admin_secret_applies_and_changes_need_the_dashboard_header() {
    let config = ServerConfig {
        open: true,
        patients: 1,
        dashboard: true,
        admin: AdminConfig { enabled: false, any_host: false, token: Some("s3cret".into()) },
        ..ServerConfig::default()
    };
    let server = MockServer::builder().config(config).start().await;
    let base = format!("{}/_dashboard", origin(&server));
    let http = reqwest::Client::new();
    assert_eq!(http.get(&base).send().await.unwrap().status(), 401);
    assert_eq!(http.get(format!("{base}?secret=wrong")).send().await.unwrap().status(), 401);
    let page = http.get(format!("{base}?secret=s3cret")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let state = http.get(format!("{base}/api/state")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(state.status(), 200);
    let bearer = http.get(format!("{base}/api/state")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(bearer.status(), 200);

    let rule = "[[fault]]\non = \"metadata\"\nfault = { kind = \"delay\", delay_ms = 1 }\n";
    let without = http.post(format!("{base}/api/faults")).header("cookie", &cookie).body(rule).send().await.unwrap();
    assert_eq!(without.status(), 403);
    let message = without.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_string();
    assert!(message.contains("x-bulkmock-dashboard"), "{message}");
    let with = http
        .post(format!("{base}/api/faults"))
        .header("cookie", &cookie)
        .header("x-bulkmock-dashboard", "1")
        .body(rule)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 201);
}

async fn change(server: &MockServer, method: reqwest::Method, path: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}/_dashboard/api/{path}", origin(server)))
        .header("x-bulkmock-dashboard", "1")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn metadata_status(server: &MockServer) -> u16 {
    reqwest::get(format!("{}/metadata", server.fhir_base())).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn fault_rules_are_added_in_plan_syntax_switched_and_deleted() {
    let server = open_dashboard().await;
    let bad = "[[fault]]\non = \"metadata\"\nfault = { kind = \"explode\" }\n";
    let refused = change(&server, reqwest::Method::POST, "faults", bad).await;
    assert_eq!(refused.status(), 400);
    let message = refused.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_string();
    assert_eq!(message, faults::file::parse(bad, "rule", false).unwrap_err(), "the plan files' message");
    assert!(message.starts_with("rule:3:"), "{message}");
    let checked = change(&server, reqwest::Method::POST, "validate", bad).await;
    assert_eq!(checked.status(), 200, "validation answers 200 either way");
    assert_eq!(checked.json::<Value>().await.unwrap()["error"].as_str(), Some(message.as_str()));
    let invalid =
        "[[fault]]\non = \"file\"\nwhen = { probability = 2.0 }\nfault = { kind = \"delay\", delay_ms = 1 }\n";
    let refused = change(&server, reqwest::Method::POST, "faults", invalid).await;
    let message = refused.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_string();
    assert!(message.starts_with("rule:1:") && message.contains("probability"), "{message}");

    let good = "[[fault]]\nname = \"meta down\"\non = \"metadata\"\nfault = { kind = \"respond\", status = 503 }\n";
    let added = change(&server, reqwest::Method::POST, "faults", good).await;
    assert_eq!(added.status(), 201);
    let id = added.json::<Value>().await.unwrap()["ids"][0].as_u64().unwrap();
    assert_eq!(metadata_status(&server).await, 503, "the rule fires on the next request");
    assert_eq!(server.transcript().last().unwrap().fault.as_deref(), Some("meta down"));

    assert_eq!(
        change(&server, reqwest::Method::POST, &format!("faults/{id}"), "{\"enabled\": false}").await.status(),
        204
    );
    assert_eq!(metadata_status(&server).await, 200, "disabled");
    let state: Value =
        reqwest::get(format!("{}/_dashboard/api/state", origin(&server))).await.unwrap().json().await.unwrap();
    assert_eq!(state["faults"][0]["disabled"], true);
    assert_eq!(state["faults"][0]["fired"], 1);
    assert_eq!(
        change(&server, reqwest::Method::POST, &format!("faults/{id}"), "{\"enabled\": true}").await.status(),
        204
    );
    assert_eq!(metadata_status(&server).await, 503, "enabled again");
    assert_eq!(change(&server, reqwest::Method::POST, &format!("faults/{id}"), "yes").await.status(), 400);
    assert_eq!(change(&server, reqwest::Method::DELETE, &format!("faults/{id}"), "").await.status(), 204);
    assert_eq!(change(&server, reqwest::Method::DELETE, &format!("faults/{id}"), "").await.status(), 404);
    assert_eq!(metadata_status(&server).await, 200, "deleted");
}

#[tokio::test]
async fn the_revision_advances_and_the_transcript_downloads_and_clears() {
    let server = open_dashboard().await;
    let advanced = change(&server, reqwest::Method::POST, "revision", "").await;
    assert_eq!(advanced.json::<Value>().await.unwrap()["revision"], 1);
    assert_eq!(metadata_status(&server).await, 200);
    assert_eq!(metadata_status(&server).await, 200);

    let download = reqwest::get(format!("{}/_dashboard/api/transcript", origin(&server))).await.unwrap();
    assert_eq!(download.headers()["content-disposition"], "attachment; filename=\"transcript-all.ndjson\"");
    let text = download.text().await.unwrap();
    let lines: Vec<Exchange> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, server.transcript(), "the NDJSON transcript, line for line");

    let mut events = Events::connect(&server).await;
    events.until("ready").await;
    assert_eq!(change(&server, reqwest::Method::DELETE, "transcript", "").await.status(), 204);
    assert!(server.transcript().is_empty());
    assert_eq!(events.next().await.0, "cleared");
}

#[tokio::test]
async fn an_export_streams_to_the_page_in_order_with_bytes_of_files() {
    let server = open_dashboard().await;
    let mut events = Events::connect(&server).await;
    let (hello, data) = events.next().await;
    assert_eq!((hello.as_str(), data["max_rows"].as_u64()), ("hello", Some(MAX_ROWS as u64)));
    assert_eq!(events.next().await.0, "ready");

    let http = reqwest::Client::new();
    let kickoff = http
        .get(format!("{}/Patient/$export", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let status_url = kickoff.headers()["content-location"].to_str().unwrap().to_string();
    // Counted before the kick-off was answered, with no duration: complete at the first poll.
    let poll = http.get(&status_url).header("Accept", "application/json").send().await.unwrap();
    assert_eq!(poll.status(), 200);
    let manifest: Value = poll.json().await.unwrap();
    let url = manifest["output"][0]["url"].as_str().unwrap();
    let body = http.get(url).send().await.unwrap().bytes().await.unwrap();

    let mut seen: Vec<Value> = Vec::new();
    let file_seq = loop {
        let (name, data) = events.next().await;
        if name == "exchange" {
            seen.push(data);
        } else if name == "finished" {
            let file = seen.iter().find(|e| e["seq"] == data["seq"] && e["target"] == "file");
            if let Some(file) = file {
                assert_eq!(data["bytes"].as_u64(), Some(body.len() as u64), "bytes sent, finally");
                assert_eq!(file["total"].as_u64(), Some(body.len() as u64), "of the total");
                break file["seq"].as_u64().unwrap();
            }
        }
    };
    let targets: Vec<&str> = seen.iter().map(|e| e["target"].as_str().unwrap_or("")).collect();
    assert_eq!(targets.first(), Some(&"kickoff"), "{targets:?}");
    assert_eq!(targets.last(), Some(&"file"), "{targets:?}");
    assert!(targets[1..targets.len() - 1].iter().all(|t| *t == "status"), "{targets:?}");
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(*seqs.last().unwrap(), file_seq);
    let job = seen[0]["job"].as_str().expect("the kick-off names its job");
    assert!(seen.iter().all(|e| e["job"] == job), "one job for all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_exchanges_stalled_pages_never_block_and_memory_stays_bounded() {
    const EXCHANGES: usize = 10_000;
    let server = open_dashboard().await;
    // A page that connects and then never reads again, and a subscriber that never receives.
    let mut stalled = Events::connect(&server).await;
    stalled.until("ready").await;
    let mut never = server.state().transcript.subscribe();

    let http = reqwest::Client::new();
    let url = format!("{}/.well-known/smart-configuration", server.fhir_base());
    let statuses: Vec<u16> = futures_util::stream::iter(0..EXCHANGES)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(&url).send().await.unwrap();
                let status = r.status().as_u16();
                r.bytes().await.unwrap();
                status
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(server.request_count(), EXCHANGES as u64, "every exchange served while nobody read");

    // The server keeps at most the channel's capacity for its slowest subscriber.
    let queued = server.state().transcript.queued_events();
    assert!(queued <= EVENT_CAPACITY, "{queued} events queued, capacity {EVENT_CAPACITY}");
    match never.try_recv() {
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(missed)) => {
            assert!(missed as usize >= EXCHANGES, "two events per exchange, all but the capacity lost: {missed}")
        }
        other => panic!("the silent subscriber lost the oldest events: {other:?}"),
    }
    match never.try_recv() {
        Ok(TranscriptEvent::Started(_) | TranscriptEvent::Finished { .. }) => {}
        other => panic!("then reads on from the oldest kept: {other:?}"),
    }

    // A page connecting now gets the latest MAX_ROWS exchanges, not 10,000.
    let mut late = Events::connect(&server).await;
    let (_, hello) = late.next().await;
    assert_eq!(hello["total"].as_u64(), Some(EXCHANGES as u64));
    let snapshot = late.until("ready").await;
    let rows: Vec<u64> =
        snapshot.iter().filter(|(n, _)| n == "exchange").map(|(_, d)| d["seq"].as_u64().unwrap()).collect();
    assert_eq!(rows.len(), MAX_ROWS);
    assert_eq!(rows.first(), Some(&((EXCHANGES - MAX_ROWS + 1) as u64)), "the latest ones");
    assert_eq!(rows.last(), Some(&(EXCHANGES as u64)));
    drop(stalled);
}

#[tokio::test]
async fn a_server_with_a_page_open_still_stops() {
    let server = open_dashboard().await;
    let mut events = Events::connect(&server).await;
    events.until("ready").await;
    // The page keeps its stream open; the server's graceful stop must end it, not wait for it.
    let stopping = tokio::task::spawn_blocking(move || drop(server));
    tokio::time::timeout(Duration::from_secs(30), stopping).await.expect("the server stops with a page open").unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), events.body.next()).await.expect("the stream ends");
    assert!(!matches!(ended, Some(Ok(ref chunk)) if !chunk.is_empty()), "no more events: {ended:?}");
}

/// `bulkmock proxy` serves the dashboard too: the proxied exchanges stream in
/// as they pass, with the fault that fired; a rule added through the page acts
/// on the next proxied request; there are no live checks (no token request
/// passes a proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_serves_the_dashboard_over_its_proxied_exchanges() {
    use std::sync::Arc;

    use bulkmock_server::proxy::{self, ProxyConfig};

    let upstream = MockServer::builder().open().patients(1).start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let config = ProxyConfig { upstream: upstream.fhir_base().to_string(), ..ProxyConfig::default() };
    let state = proxy::state(ServerConfig { dashboard: true, ..ServerConfig::default() }, &origin, &config).unwrap();
    tokio::spawn(proxy::serve(listener, Arc::clone(&state), std::future::pending()));
    let base = format!("{origin}/_dashboard");
    let http = reqwest::Client::new();
    assert_eq!(http.get(&base).send().await.unwrap().status(), 200);

    let mut events = {
        let response = http.get(format!("{base}/events")).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events { body: Box::pin(response.bytes_stream()), buffer: String::new() }
    };
    events.until("ready").await;
    let rule = "[[fault]]\non = \"metadata\"\nfault = { kind = \"respond\", status = 503, body = \"transient\" }\n";
    let added =
        http.post(format!("{base}/api/faults")).header("x-bulkmock-dashboard", "1").body(rule).send().await.unwrap();
    assert_eq!(added.status(), 201, "{}", added.text().await.unwrap());
    let answer = http.get(format!("{}/metadata", state.fhir_base)).send().await.unwrap();
    assert_eq!(answer.status(), 503, "the rule added through the page acts on the proxied request");
    let seen = events.until("exchange").await;
    let (_, exchange) = seen.last().unwrap();
    assert!(exchange.to_string().contains("/fhir/metadata"), "{exchange}");
    assert!(exchange.to_string().contains("metadata#"), "the fault that fired: {exchange}");
    let checks: Value = http.get(format!("{base}/api/checks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(checks["available"], false, "no live checks on a proxy");
}
