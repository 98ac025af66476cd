//! Faults observed on the wire, not through the server's own view.

mod common;

use std::time::{Duration, SystemTime};

use bulkmock_server::{BodyKind, Fault, FaultRule, MockServer, Target, Trigger};
use common::{export_get, http, kickoff, manifest, poll_until_done};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn respond(status: u16, body: BodyKind) -> Fault {
    Fault::respond(status, body)
}

/// GETs `url` over a raw TCP connection and returns (headers, body bytes received before EOF).
async fn raw_get(url: &str) -> (String, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all).await; // EOF or reset both end the read
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").expect("headers") + 4;
    (String::from_utf8_lossy(&all[..split]).to_string(), all[split..].to_vec())
}

fn content_length(headers: &str) -> u64 {
    headers
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .expect("Content-Length")
}

#[tokio::test]
async fn a_truncated_file_sends_exactly_the_cut_bytes_then_closes() {
    let server = MockServer::builder()
        .open()
        .patients(20)
        .fault(
            FaultRule::new(
                Target::File,
                Fault::Truncate { after_bytes: Some(5000), fraction: None, at_line_end: false },
            )
            .resource_type("Observation"),
        )
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Observation,Patient").await).await;
    let obs = m.output.iter().find(|f| f.resource_type.as_deref() == Some("Observation")).unwrap();
    let (headers, body) = raw_get(&obs.url).await;
    assert!(headers.starts_with("HTTP/1.1 200"));
    assert!(content_length(&headers) > 10_000, "the full length is promised");
    assert_eq!(body.len(), 5000, "exactly the cut is sent");
    // Other types are untouched.
    let patient = m.output.iter().find(|f| f.resource_type.as_deref() == Some("Patient")).unwrap();
    let (headers, body) = raw_get(&patient.url).await;
    assert_eq!(body.len() as u64, content_length(&headers));
    // reqwest sees the cut as a body error.
    let err = http().get(&obs.url).send().await.unwrap().bytes().await.unwrap_err();
    assert!(err.is_decode() || err.is_body(), "{err:?}");
    let truncated: Vec<_> = server.transcript().into_iter().filter(|e| e.fault.is_some()).collect();
    assert_eq!(truncated.len(), 2);
    assert_eq!(truncated[0].bytes, 5000, "the transcript counts what was sent");
}

#[tokio::test]
async fn a_status_error_twice_then_the_job_continues() {
    let rule = FaultRule::new(
        Target::Status,
        Fault::respond(503, BodyKind::Transient).with_message("busy").with_retry_after_s(1),
    )
    .times(2)
    .named("503 twice");
    let server = MockServer::builder().open().patients(3).fault(rule).start().await;
    let status = kickoff(&server, "$export", "_type=Patient").await;
    for _ in 0..2 {
        let r = http().get(&status).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let o: Value = r.json().await.unwrap();
        assert_eq!(o["issue"][0]["code"], "transient", "SRV-131");
    }
    let (_, m) = manifest(&status).await;
    assert_eq!(m.output.len(), 1);
    let labels: Vec<Option<String>> = server.transcript().into_iter().map(|e| e.fault).collect();
    assert_eq!(labels.iter().filter(|l| l.as_deref() == Some("503 twice")).count(), 2);
}

#[tokio::test]
async fn retry_after_as_an_http_date_lies_in_the_future() {
    let rule = FaultRule::new(
        Target::Kickoff,
        Fault::respond(429, BodyKind::Outcome).with_code("throttled").with_retry_after_date_s(30),
    );
    let server = MockServer::builder().open().fault(rule.times(1)).start().await;
    let r = export_get(format!("{}/$export", server.fhir_base())).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let date = httpdate::parse_http_date(r.headers()["retry-after"].to_str().unwrap()).unwrap();
    let ahead = date.duration_since(SystemTime::now()).unwrap();
    assert!(ahead > Duration::from_secs(20) && ahead <= Duration::from_secs(31), "{ahead:?}");
    assert_eq!(export_get(format!("{}/$export", server.fhir_base())).send().await.unwrap().status(), 202);
}

#[tokio::test]
async fn html_error_bodies_say_they_are_html() {
    let server =
        MockServer::builder().open().fault(FaultRule::new(Target::Status, respond(502, BodyKind::Html))).start().await;
    let status = kickoff(&server, "$export", "").await;
    let r = http().get(&status).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().starts_with("<html>"));
}

#[tokio::test]
async fn headers_can_be_removed_or_made_relative() {
    let missing =
        FaultRule::new(Target::Kickoff, Fault::Header { name: "content-location".into(), value: String::new() })
            .times(1);
    let relative =
        FaultRule::new(Target::Kickoff, Fault::Header { name: "content-location".into(), value: "{relative}".into() });
    let server = MockServer::builder().open().fault(missing).fault(relative).start().await;
    let first = export_get(format!("{}/$export", server.fhir_base())).send().await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("content-location").is_none());
    let second = export_get(format!("{}/$export", server.fhir_base())).send().await.unwrap();
    assert!(second.headers()["content-location"].to_str().unwrap().starts_with("/fhir/bulkstatus/"));
}

#[tokio::test]
async fn the_token_endpoint_can_fail_with_oauth_errors_and_recover() {
    let rule = FaultRule::new(
        Target::Token,
        Fault::respond(401, BodyKind::Oauth).with_code("invalid_client").with_message("jti already used (replay)"),
    )
    .times(1);
    let server = MockServer::builder().patients(1).fault(rule).start().await;
    let key = server.client_key().clone();
    let (status, body) =
        token_request(&server, &assertion(&server, &key, server.client_id(), "f0"), "system/*.rs").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "a false replay");
    let (status, _) = token_request(&server, &assertion(&server, &key, server.client_id(), "f1"), "system/*.rs").await;
    assert_eq!(status, 200, "then a fresh assertion works");
    let t = server.transcript();
    assert_eq!(t[0].client_id.as_deref(), Some("bulkmock-demo"));
    assert_eq!(t[0].assertion.as_ref().unwrap()["claims"]["jti"], "f0", "token requests keep the decoded claims");
}

#[tokio::test]
async fn probabilities_follow_the_seed() {
    let run = |seed| async move {
        let rule = FaultRule::new(Target::Metadata, respond(500, BodyKind::Empty)).when(Trigger::Probability(0.5));
        let server = MockServer::builder().open().seed(seed).fault(rule).start().await;
        let mut out = Vec::new();
        for _ in 0..24 {
            out.push(http().get(format!("{}/metadata", server.fhir_base())).send().await.unwrap().status().as_u16());
        }
        out
    };
    let a = run(5).await;
    assert_eq!(a, run(5).await, "the same seed gives the same faults");
    assert!(a.contains(&500) && a.contains(&200));
}

#[tokio::test]
async fn the_transcript_redacts_tokens_and_records_each_exchange() {
    let server = MockServer::builder().patients(2).start().await;
    let token = server.issue_token("system/*.rs");
    let r =
        export_get(format!("{}/$export?_type=Patient", server.fhir_base())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let t = server.transcript();
    let e = &t[0];
    assert_eq!((e.method.as_str(), e.path.as_str(), e.status), ("GET", "/fhir/$export", 202));
    assert_eq!(e.query.as_deref(), Some("_type=Patient"));
    assert_eq!(e.client_id.as_deref(), Some("bulkmock-demo"));
    let auth = &e.headers["authorization"];
    assert!(auth.starts_with("Bearer <") && !auth.contains(&token), "{auth}");
    assert!(!serde_json::to_string(&t).unwrap().contains(&token), "no token anywhere in the transcript");
}

#[tokio::test]
async fn the_admin_api_adds_lists_and_removes_faults() {
    let server = MockServer::builder().open().admin().start().await;
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let r = http()
        .post(format!("{origin}/_admin/faults"))
        .json(&json!({"on": "metadata", "fault": {"kind": "respond", "status": 418}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["ids"][0].as_u64().unwrap();
    assert_eq!(http().get(format!("{}/metadata", server.fhir_base())).send().await.unwrap().status(), 418);
    let list: Value = http().get(format!("{origin}/_admin/faults")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list[0]["fired"], 1);
    let bad = http()
        .post(format!("{origin}/_admin/faults"))
        .json(&json!({"on": "metadata", "when": {"probability": 3}, "fault": {"kind": "delay", "delay_ms": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(http().delete(format!("{origin}/_admin/faults/{id}")).send().await.unwrap().status(), 204);
    assert_eq!(http().get(format!("{}/metadata", server.fhir_base())).send().await.unwrap().status(), 200);
    let transcript: Value =
        http().get(format!("{origin}/_admin/transcript")).send().await.unwrap().json().await.unwrap();
    assert_eq!(transcript.as_array().unwrap().len(), 2, "admin calls are not in the transcript");
    let ndjson =
        http().get(format!("{origin}/_admin/transcript?format=ndjson")).send().await.unwrap().text().await.unwrap();
    assert_eq!(ndjson.lines().count(), 2);
    assert_eq!(http().post(format!("{origin}/_admin/reset")).send().await.unwrap().status(), 204);
    assert!(server.transcript().is_empty());

    let closed = MockServer::builder().open().start().await;
    let origin = closed.fhir_base().trim_end_matches("/fhir").to_string();
    assert_eq!(http().get(format!("{origin}/_admin/faults")).send().await.unwrap().status(), 404, "off unless enabled");
}

#[tokio::test]
async fn a_slow_drip_still_delivers_the_whole_file() {
    let rule = FaultRule::new(Target::File, Fault::Drip { bytes_per_s: 200_000 });
    let server = MockServer::builder().open().patients(5).fault(rule).start().await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let r = http().get(&m.output[0].url).send().await.unwrap();
    let declared: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), declared);
}

fn rule(on: Target, fault: Fault) -> FaultRule {
    FaultRule::new(on, fault)
}

async fn status_codes(url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(http().get(url).send().await.unwrap().status().as_u16());
    }
    out
}

#[tokio::test]
async fn a_slow_job_by_polls_then_a_fatal_failure_from_the_nth_poll() {
    let slow = rule(Target::Status, Fault::InProgress { retry_after_s: Some(2), progress: Some("40%".into()) })
        .when(Trigger::First(2));
    let server = MockServer::builder().open().patients(2).fault(slow).start().await;
    let status = kickoff(&server, "$export", "_type=Patient").await;
    let r = http().get(&status).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-progress"].to_str().unwrap()), (202, "40%"));
    assert_eq!(r.headers()["retry-after"], "2");
    let _ = http().get(&status).send().await.unwrap();
    assert_eq!(manifest(&status).await.1.output.len(), 1, "after two slow polls the job is done");

    let fatal = rule(Target::Status, respond(500, BodyKind::Outcome)).when(Trigger::From(3));
    let server = MockServer::builder().open().patients(2).fault(fatal).start().await;
    let status = kickoff(&server, "$export", "_type=Patient").await;
    let _ = manifest(&status).await;
    let codes = status_codes(&status, 3).await;
    assert_eq!(&codes[1..], &[500, 500], "{codes:?}");
}

#[tokio::test]
async fn a_vanished_job_answers_404() {
    let server = MockServer::builder()
        .open()
        .patients(2)
        .fault(rule(Target::Status, Fault::Vanish).when(Trigger::Nth(2)))
        .start()
        .await;
    let status = kickoff(&server, "$export", "").await;
    let _ = manifest(&status).await; // first poll
    assert_eq!(status_codes(&status, 2).await, vec![404, 404]);
    assert_eq!(server.live_jobs(), 0);
}

#[tokio::test]
async fn a_revoked_token_stops_working_mid_export() {
    let server = MockServer::builder()
        .patients(2)
        .fault(rule(Target::Status, Fault::Revoke).when(Trigger::Nth(2)))
        .start()
        .await;
    let token = server.issue_token("system/*.rs");
    let r = export_get(format!("{}/$export", server.fhir_base())).bearer_auth(&token).send().await.unwrap();
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let first = http().get(&status).bearer_auth(&token).send().await.unwrap().status().as_u16();
    assert!(first == 200 || first == 202);
    let r = http().get(&status).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("revoked"));
    let fresh = server.issue_token("system/*.rs");
    assert_eq!(manifest_with(&status, &fresh).await["output"].as_array().unwrap().len(), 21);
}

async fn manifest_with(url: &str, token: &str) -> Value {
    loop {
        let r = http().get(url).bearer_auth(token).send().await.unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn manifests_can_take_other_shapes() {
    use bulkmock_server::faults::model::ManifestVariant as V;
    for (variant, check) in [
        (
            V::V4Ballot,
            (|v: &Value| v.get("request").is_none() && v["outcome"].is_array() && v["extension"].is_array())
                as fn(&Value) -> bool,
        ),
        (V::UnknownFields, |v: &Value| v["output"][0]["x-vendor"] == true),
        (V::EmptyOutput, |v: &Value| v["output"].as_array().unwrap().is_empty()),
        (V::WrongCount, |v: &Value| v["output"][0]["count"] == 3),
        (V::OutputMissing, |v: &Value| v.get("output").is_none()),
    ] {
        let server = MockServer::builder()
            .open()
            .patients(2)
            .fault(rule(Target::Status, Fault::Manifest { variant }))
            .start()
            .await;
        let status = kickoff(&server, "$export", "_type=Patient").await;
        let r = common::poll_until_done(&status).await;
        assert_eq!(r.status(), 200);
        let declared: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), declared);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(check(&v), "{variant:?}: {v}");
    }
    let server = MockServer::builder()
        .open()
        .patients(2)
        .fault(rule(Target::Status, Fault::Manifest { variant: V::NotJson }))
        .start()
        .await;
    let r = common::poll_until_done(&kickoff(&server, "$export", "").await).await;
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());
}

#[tokio::test]
async fn file_content_can_be_damaged() {
    use bulkmock_server::faults::model::ContentMutation as M;
    for (mutation, check) in [
        (
            M::MalformedLine,
            (|b: &[u8]| serde_json::from_slice::<Value>(b.split(|&c| c == b'\n').next().unwrap()).is_err())
                as fn(&[u8]) -> bool,
        ),
        (M::Crlf, |b: &[u8]| b.ends_with(b"\r\n")),
        (M::Bom, |b: &[u8]| b.starts_with(&[0xef, 0xbb, 0xbf])),
        (M::InvalidUtf8, |b: &[u8]| std::str::from_utf8(b).is_err()),
        (M::DuplicateLine, |b: &[u8]| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count() == 4),
        (M::NoTrailingNewline, |b: &[u8]| !b.ends_with(b"\n")),
    ] {
        let server = MockServer::builder()
            .open()
            .patients(3)
            .fault(rule(Target::File, Fault::Content { mutation, line: 1 }))
            .start()
            .await;
        let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
        assert_eq!(m.output[0].count, Some(3));
        let r = http().get(&m.output[0].url).header("Accept-Encoding", "gzip").send().await.unwrap();
        assert!(r.headers().get("content-encoding").is_none(), "content faults serve plain bytes");
        let declared: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), declared, "{mutation:?}");
        assert!(check(&body), "{mutation:?}: {}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test]
async fn gzip_and_range_trouble() {
    use bulkmock_server::faults::model::{GzipMode, RangeMode};
    use std::io::Read;
    let server = MockServer::builder()
        .open()
        .patients(30)
        .fault(rule(Target::File, Fault::Gzip { mode: GzipMode::Corrupt }))
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Observation").await).await;
    let gz =
        http().get(&m.output[0].url).header("Accept-Encoding", "gzip").send().await.unwrap().bytes().await.unwrap();
    let mut out = Vec::new();
    assert!(flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).is_err(), "corrupt gzip fails to decode");

    let server = MockServer::builder()
        .open()
        .patients(5)
        .fault(rule(Target::File, Fault::Gzip { mode: GzipMode::NoHeader }))
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let r = http().get(&m.output[0].url).send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    assert!(r.bytes().await.unwrap().starts_with(&[0x1f, 0x8b]), "gzip bytes without the header");

    for (mode, expected) in [(RangeMode::Ignore, 200), (RangeMode::Unsatisfiable, 416)] {
        let server =
            MockServer::builder().open().patients(5).fault(rule(Target::File, Fault::Range { mode })).start().await;
        let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
        let r = http().get(&m.output[0].url).header("Range", "bytes=10-").send().await.unwrap();
        assert_eq!(r.status(), expected, "{mode:?}");
        if expected == 416 {
            assert!(r.headers()["content-range"].to_str().unwrap().starts_with("bytes */"));
        }
    }
}

#[tokio::test]
async fn a_cut_at_a_line_end_leaves_whole_lines() {
    let cut = Fault::Truncate { after_bytes: None, fraction: Some(0.5), at_line_end: true };
    let server = MockServer::builder().open().patients(20).fault(rule(Target::File, cut)).start().await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let (headers, body) = raw_get(&m.output[0].url).await;
    assert!((body.len() as u64) < content_length(&headers));
    assert!(body.ends_with(b"\n") && !body.is_empty(), "the cut falls just after a newline");
}

#[tokio::test]
async fn redirects_point_at_the_other_host_name() {
    let bare = Fault::Redirect { host: None, capability: false, ttl_s: 300 };
    let server = MockServer::builder().open().patients(2).fault(rule(Target::File, bare).times(1)).start().await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_follow.get(&m.output[0].url).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("http://localhost:") && location.ends_with(".Patient.ndjson"), "{location}");
    let body = http().get(&location).send().await.unwrap().text().await.unwrap();
    assert_eq!(body.lines().count(), 2);
    let last = server.transcript().pop().unwrap();
    assert!(last.headers["host"].starts_with("localhost:"), "the transcript shows which host name was asked");
}

#[tokio::test]
async fn redirect_targets_carry_a_capability_that_needs_no_token() {
    // Like presigned storage URLs: a correct client sends no token to the other
    // host (CLI-031), so the target must work without one.
    let server = MockServer::builder()
        .patients(2)
        .fault(rule(Target::File, Fault::redirect()))
        .fault(rule(Target::Status, Fault::redirect()))
        .start()
        .await;
    let auth = format!("Bearer {}", server.issue_token("system/*.rs"));
    let r = export_get(format!("{}/$export?_type=Patient", server.fhir_base()))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirected = |url: String| {
        let (no_follow, auth) = (no_follow.clone(), auth.clone());
        async move {
            let r = no_follow.get(&url).header("Authorization", auth).send().await.unwrap();
            assert_eq!(r.status(), 307, "{url}");
            r.headers()["location"].to_str().unwrap().to_string()
        }
    };
    // Without a token there is no redirect (and no capability): the usual 401.
    assert_eq!(no_follow.get(&status).send().await.unwrap().status(), 401);
    // Each poll is redirected; the target answers without a token.
    let mut m = Value::Null;
    for _ in 0..4000 {
        let target = redirected(status.clone()).await;
        assert!(target.starts_with("http://localhost:") && target.contains("/bulkstatus/") && target.contains("?cap="));
        let r = http().get(&target).send().await.unwrap();
        assert!(r.status() == 200 || r.status() == 202, "the status target needs no token: {}", r.status());
        if r.status() == 200 {
            m = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A file redirect: the target opens without a token, whenever it is asked.
    let file = m["output"][0]["url"].as_str().unwrap().to_string();
    let target = redirected(file).await;
    assert!(target.contains(".Patient.ndjson?cap="), "{target}");
    for _ in 0..2 {
        let r = http().get(&target).send().await.unwrap();
        assert_eq!(r.status(), 200, "not redirected again: the redirect ends at its target");
        assert_eq!(r.text().await.unwrap().lines().count(), 2);
    }
    // The capability opens only this job, and only what it was issued for.
    let forged = target.replace("cap=", "cap=00");
    assert_eq!(http().get(&forged).send().await.unwrap().status(), 403);
    let other_host = server.transcript().into_iter().filter(|e| e.headers["host"].starts_with("localhost:"));
    assert!(other_host.into_iter().all(|e| !e.headers.contains_key("authorization")));
}

#[tokio::test]
async fn token_responses_can_be_odd_and_short_lived() {
    use bulkmock_server::faults::model::ExpiresIn;
    let odd =
        rule(Target::Token, Fault::TokenResponse { token_type: Some("Bearer".into()), expires_in: ExpiresIn::String })
            .times(1);
    let short = rule(Target::Token, Fault::TokenLifetime { lifetime_s: 1 });
    let server = MockServer::builder().patients(1).fault(odd).fault(short).start().await;
    let key = server.client_key().clone();
    let (_, first) = token_request(&server, &assertion(&server, &key, server.client_id(), "odd0"), "system/*.rs").await;
    let (_, second) =
        token_request(&server, &assertion(&server, &key, server.client_id(), "odd1"), "system/*.rs").await;
    assert_eq!((first["token_type"].as_str(), first["expires_in"].as_str()), (Some("Bearer"), Some("300")));
    assert_eq!(second["expires_in"], 1, "the token really lives one second");
}

/// Signs a fresh assertion for `client_id` with `key`.
fn assertion(server: &MockServer, key: &bulkmock_server::ClientKey, client_id: &str, jti: &str) -> String {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let mut header = jsonwebtoken::Header::new(key.alg.algorithm());
    header.kid = Some(key.kid.clone());
    let claims = json!({"iss": client_id, "sub": client_id, "aud": server.token_url(), "exp": now + 60, "jti": jti});
    jsonwebtoken::encode(&header, &claims, &key.encoding_key()).unwrap()
}

async fn token_request(server: &MockServer, assertion: &str, scope: &str) -> (u16, Value) {
    let r = http()
        .post(server.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn status_urls_on_the_other_host_name() {
    let rule = rule(Target::Kickoff, Fault::Header { name: "content-location".into(), value: "{other_host}".into() });
    let server = MockServer::builder().open().patients(2).fault(rule).start().await;
    let r = export_get(format!("{}/$export", server.fhir_base())).send().await.unwrap();
    let location = r.headers()["content-location"].to_str().unwrap().to_string();
    assert!(location.starts_with("http://localhost:"), "{location}");
    assert_eq!(manifest(&location).await.1.output.len(), 21, "the other host name reaches the same server");
}

#[tokio::test]
async fn a_stalled_file_still_arrives_whole() {
    let server = MockServer::builder()
        .open()
        .patients(5)
        .fault(rule(Target::File, Fault::Stall { after_bytes: 100, fraction: None, stall_ms: 200 }))
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let r = http().get(&m.output[0].url).send().await.unwrap();
    let declared: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), declared);
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 5);
}

#[tokio::test]
async fn token_endpoint_faults_narrow_the_scope_and_skew_the_clock() {
    let narrow = rule(Target::Token, Fault::NarrowScope { scope: "system/Patient.rs".into() }).times(1);
    let skew = rule(Target::Token, Fault::ClockSkew { skew_s: 600 }).times(1);
    let server = MockServer::builder().patients(1).fault(narrow).fault(skew).start().await;
    let key = server.client_key().clone();
    let (status, body) = token_request(
        &server,
        &assertion(&server, &key, server.client_id(), "n1"),
        "system/Patient.rs system/Observation.rs",
    )
    .await;
    assert_eq!((status, body["scope"].as_str().unwrap()), (200, "system/Patient.rs"), "a narrower grant than asked");
    let (status, body) =
        token_request(&server, &assertion(&server, &key, server.client_id(), "n2"), "system/*.rs").await;
    assert_eq!(status, 401, "a server clock 10 minutes ahead sees the assertion as expired");
    assert!(body["error_description"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test]
async fn narrow_scope_compares_scopes_whatever_their_spelling() {
    // AUTH-062: v1 `.read` is v2 `.rs`, and a v1 request gets v1 scopes back;
    // AUTH-066: the grant may be narrower than the request.
    let v1 = "system/Patient.read system/Observation.read system/Encounter.read";
    let v2 = "system/Patient.rs system/Observation.rs system/Encounter.rs";
    let mut jti = 0;
    for limit in
        [None, Some("system/Patient.rs system/Observation.rs"), Some("system/Patient.read system/Observation.read")]
    {
        let mut builder = MockServer::builder().patients(1);
        if let Some(scope) = limit {
            builder = builder.fault(rule(Target::Token, Fault::NarrowScope { scope: scope.into() }));
        }
        let server = builder.start().await;
        let key = server.client_key().clone();
        for requested in [v1, v2] {
            jti += 1;
            let signed = assertion(&server, &key, server.client_id(), &format!("s{jti}"));
            let (status, body) = token_request(&server, &signed, requested).await;
            let expected = match limit {
                None => requested.to_string(),
                Some(_) => requested.rsplit_once(' ').unwrap().0.to_string(),
            };
            assert_eq!(
                (status, body["scope"].as_str()),
                (200, Some(expected.as_str())),
                "{requested} within {limit:?}: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_fetches_can_fail() {
    let key = bulkmock_server::ClientKey::generate(bulkmock_server::KeyAlg::Es384).unwrap();
    let jwks = serde_json::to_value(key.jwks()).unwrap();
    let app = axum::Router::new().route("/jwks.json", axum::routing::get(move || async move { axum::Json(jwks) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    for (fault, needle) in [
        (Fault::Rotated, "no key with kid"),
        (Fault::Unreachable, "connection refused"),
        (respond(503, BodyKind::Empty), "answered HTTP 503"),
        (Fault::Delay { delay_ms: 60_000 }, "timed out"),
    ] {
        let server = MockServer::builder().patients(1).fault(rule(Target::Jwks, fault).times(1)).start().await;
        let id = server
            .register_client(bulkmock_server::Registration { jwks_url: Some(url.clone()), ..Default::default() })
            .unwrap();
        let (status, body) = token_request(&server, &assertion(&server, &key, &id, "j1"), "system/*.rs").await;
        assert_eq!(status, 401);
        assert!(body["error_description"].as_str().unwrap().contains(needle), "{body}");
        let (status, _) = token_request(&server, &assertion(&server, &key, &id, "j2"), "system/*.rs").await;
        assert_eq!(status, 200, "the next fetch works");
    }
}

#[tokio::test]
async fn a_client_fault_profile_applies_to_that_client_only() {
    let server = MockServer::builder().patients(2).start().await;
    let key = bulkmock_server::ClientKey::generate(bulkmock_server::KeyAlg::Es384).unwrap();
    let profile =
        json!({"fault": [{"on": "kickoff", "fault": {"kind": "respond", "status": 503, "body": "transient"}}]});
    let id = server
        .register_client(bulkmock_server::Registration {
            jwks: Some(serde_json::to_value(key.jwks()).unwrap()),
            fault_profile: Some(profile),
            ..Default::default()
        })
        .unwrap();
    let (_, body) = token_request(&server, &assertion(&server, &key, &id, "p1"), "system/*.rs").await;
    let faulty = body["access_token"].as_str().unwrap().to_string();
    let healthy = server.issue_token("system/*.rs");
    let kick = |token: String| export_get(format!("{}/$export", server.fhir_base())).bearer_auth(token).send();
    assert_eq!(kick(faulty).await.unwrap().status(), 503);
    assert_eq!(kick(healthy).await.unwrap().status(), 202);
    let bad = server.register_client(bulkmock_server::Registration {
        jwks: Some(serde_json::to_value(key.jwks()).unwrap()),
        fault_profile: Some(json!([{"on": "file", "fault": {"kind": "drip", "bytes_per_s": 0}}])),
        ..Default::default()
    });
    assert!(bad.unwrap_err().contains("fault_profile rule 1"));
}

#[tokio::test]
async fn the_same_seed_and_requests_give_the_same_transcript() {
    let run = || async {
        let server = MockServer::builder()
            .open()
            .patients(4)
            .seed(3)
            .fault(rule(Target::File, respond(503, BodyKind::Transient)).when(Trigger::Probability(0.5)))
            .start()
            .await;
        let (_, m) = manifest(&kickoff(&server, "$export", "").await).await;
        for f in &m.output {
            let _ = http().get(&f.url).send().await.unwrap().bytes().await;
        }
        server
            .transcript()
            .into_iter()
            // How many polls answer 202 depends on how fast the job counts, not on the seed.
            .filter(|e| !(e.status == 202 && e.path.contains("/bulkstatus/")))
            .map(|e| (e.method, e.path.split('/').skip(3).collect::<Vec<_>>().join("/"), e.status, e.bytes, e.fault))
            .collect::<Vec<_>>()
    };
    let (a, b) = (run().await, run().await);
    assert!(a.iter().any(|e| e.2 == 503) && a.iter().any(|e| e.2 == 200));
    assert_eq!(a, b, "same seed, same client behaviour: same transcript (modulo times)");
}

#[tokio::test]
async fn expired_file_urls_come_back_fresh_in_a_new_manifest() {
    let server =
        MockServer::builder().open().patients(3).fault(rule(Target::File, Fault::ExpireUrls).times(1)).start().await;
    let status = kickoff(&server, "$export", "_type=Patient").await;
    let (_, first) = manifest(&status).await;
    let old = first.output[0].url.clone();
    let r = http().get(&old).send().await.unwrap();
    assert_eq!(r.status(), 410);
    let (_, again) = manifest(&status).await;
    let fresh = again.output[0].url.clone();
    assert!(fresh.ends_with("?v=1"), "{fresh}");
    assert_eq!(http().get(&fresh).send().await.unwrap().text().await.unwrap().lines().count(), 3);
    assert_eq!(http().get(&old).send().await.unwrap().status(), 410, "the old URL stays expired");
}

#[tokio::test]
async fn an_etag_that_changes_between_attempts() {
    let rule = rule(Target::File, Fault::Header { name: "etag".into(), value: "\"v{n}\"".into() });
    let server = MockServer::builder().open().patients(3).fault(rule).start().await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let a = http().get(&m.output[0].url).send().await.unwrap().headers()["etag"].to_str().unwrap().to_string();
    let b = http().get(&m.output[0].url).send().await.unwrap().headers()["etag"].to_str().unwrap().to_string();
    assert_eq!((a.as_str(), b.as_str()), ("\"v1\"", "\"v2\""));
}

#[tokio::test]
async fn a_fault_profile_in_the_base_url_applies_to_clients_that_use_it() {
    use bulkmock_server::faults::FaultPlan;
    use bulkmock_server::faults::profile::encode;
    let server = MockServer::builder().open().patients(3).start().await;
    let plan = FaultPlan { rules: vec![rule(Target::Status, respond(503, BodyKind::Transient)).times(1)] };
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let base = format!("{origin}/p/{}/fhir", encode(&plan));
    let r = export_get(format!("{base}/$export?_type=Patient")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    assert!(status.starts_with(&base), "the status URL keeps the profile: {status}");
    assert_eq!(http().get(&status).send().await.unwrap().status(), 503, "the profile's fault");
    let (_, m) = manifest(&status).await;
    assert!(m.output[0].url.starts_with(&base), "file URLs keep the profile");
    assert_eq!(http().get(&m.output[0].url).send().await.unwrap().text().await.unwrap().lines().count(), 3);
    // The plain base has no faults.
    let plain = kickoff(&server, "$export", "_type=Patient").await;
    assert_eq!(poll_until_done(&plain).await.status(), 200);
    // A profile that is not a plan is refused with a reason.
    let r = http().get(format!("{origin}/p/bm90LWEtcGxhbg/fhir/metadata")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not a fault plan"));
}

/// GETs over raw TCP; returns the bytes received and how the read ended.
async fn raw_get_until_end(url: &str) -> (Vec<u8>, std::io::Result<()>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream
        .write_all(format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (all, Ok(())),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => return (all, Err(e)),
        }
    }
}

#[tokio::test]
async fn a_reset_is_seen_as_a_reset() {
    let server = MockServer::builder()
        .open()
        .patients(30)
        .fault(rule(Target::File, Fault::Reset { after_bytes: 3000, fraction: None }).times(1))
        .fault(rule(Target::Metadata, Fault::Reset { after_bytes: 0, fraction: None }).times(1))
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Observation").await).await;
    let (received, end) = raw_get_until_end(&m.output[0].url).await;
    let err = end.expect_err("the read ends in an error, not EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err:?}");
    let body_start = received.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    if let Some(start) = body_start {
        assert!(received.len() - start <= 3000, "no more than the bytes before the reset");
    }
    // Before the headers: nothing at all, then the reset.
    let (received, end) = raw_get_until_end(&format!("{}/metadata", server.fhir_base())).await;
    assert!(received.is_empty(), "{}", String::from_utf8_lossy(&received));
    assert_eq!(end.expect_err("reset").kind(), std::io::ErrorKind::ConnectionReset);
    // The faults retired: the next requests are served.
    assert_eq!(http().get(&m.output[0].url).send().await.unwrap().status(), 200);
    assert_eq!(http().get(format!("{}/metadata", server.fhir_base())).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn capability_urls_work_without_a_token_until_they_expire() {
    let live = rule(Target::Status, Fault::CapabilityUrls { ttl_s: 300 }).times(1);
    let server = MockServer::builder().patients(3).fault(live).start().await;
    let token = server.issue_token("system/*.rs");
    let r =
        export_get(format!("{}/$export?_type=Patient", server.fhir_base())).bearer_auth(&token).send().await.unwrap();
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let m = manifest_with(&status, &token).await;
    assert_eq!(m["requiresAccessToken"], false);
    let url = m["output"][0]["url"].as_str().unwrap();
    assert!(url.contains("?cap="), "{url}");
    let body = http().get(url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body.lines().count(), 3, "no token needed");
    let bare = url.split('?').next().unwrap();
    assert_eq!(http().get(bare).send().await.unwrap().status(), 401, "without the capability the token is needed");

    let expiring = rule(Target::Status, Fault::CapabilityUrls { ttl_s: 0 });
    let server = MockServer::builder().patients(3).fault(expiring).start().await;
    let token = server.issue_token("system/*.rs");
    let r =
        export_get(format!("{}/$export?_type=Patient", server.fhir_base())).bearer_auth(&token).send().await.unwrap();
    let m = manifest_with(r.headers()["content-location"].to_str().unwrap(), &token).await;
    let r = http().get(m["output"][0]["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("expired"));
}

/// Every member of `v`, at any depth, that is `null`, by path.
fn null_members(v: &Value, path: &str, found: &mut Vec<String>) {
    match v {
        Value::Null => found.push(path.to_string()),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, x)| null_members(x, &format!("{path}[{i}]"), found))
        }
        Value::Object(m) => m.iter().for_each(|(k, x)| null_members(x, &format!("{path}.{k}"), found)),
        _ => {}
    }
}

#[tokio::test]
async fn a_capability_urls_manifest_has_no_null_members() {
    // SRV-160, E-04: members are typed; a list the manifest lacks (here
    // `deleted`, without `_since`) stays absent rather than becoming null.
    let server = MockServer::builder()
        .patients(3)
        .fault(rule(Target::Status, Fault::CapabilityUrls { ttl_s: 300 }))
        .start()
        .await;
    let token = server.issue_token("system/*.rs");
    let r =
        export_get(format!("{}/$export?_type=Patient", server.fhir_base())).bearer_auth(&token).send().await.unwrap();
    let m = manifest_with(r.headers()["content-location"].to_str().unwrap(), &token).await;
    let mut nulls = Vec::new();
    null_members(&m, "$", &mut nulls);
    assert!(nulls.is_empty(), "null members {nulls:?} in {m}");
    assert!(m.get("deleted").is_none(), "{m}");
    assert!(m["output"][0]["url"].as_str().unwrap().contains("?cap="), "{m}");
}

#[tokio::test]
async fn duplicates_across_files() {
    use bulkmock_server::faults::model::ContentMutation;
    let dup = rule(Target::File, Fault::Content { mutation: ContentMutation::DuplicateAcrossFiles, line: 1 })
        .when(Trigger::Nth(2));
    let server = MockServer::builder().open().patients(6).resources_per_file(3).fault(dup).start().await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    assert_eq!(m.output.len(), 2);
    let first = http().get(&m.output[0].url).send().await.unwrap().text().await.unwrap();
    let second = http().get(&m.output[1].url).send().await.unwrap().text().await.unwrap();
    assert_eq!(second.lines().count(), 4, "three of its own plus one from the other file");
    assert_eq!(second.lines().last(), first.lines().next(), "the first resource of the other file appears again");
}

#[tokio::test]
async fn the_reference_servers_embedded_settings_work_as_a_base_url() {
    use base64::Engine;
    let server = MockServer::builder().open().patients(5).start().await;
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let encode = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let settings =
        encode(json!({"err": "transient_error", "page": 2, "dur": 0, "tlt": 15, "m": 1, "del": 0, "secure": false}));
    let base = format!("{origin}/{settings}/fhir");
    let r = export_get(format!("{base}/$export?_type=Patient")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    assert!(status.starts_with(&base), "{status}");
    let r = http().get(&status).send().await.unwrap();
    assert_eq!(r.status(), 500, "err=transient_error: the first poll fails");
    assert_eq!(r.json::<Value>().await.unwrap()["issue"][0]["code"], "transient");
    let (_, m) = manifest(&status).await;
    assert_eq!(m.output.len(), 3, "page=2: five patients in files of two");
    assert!(m.output.iter().all(|f| f.url.starts_with(&base)));

    let failing = encode(json!({"err": "file_generation_failed"}));
    let r = export_get(format!("{origin}/{failing}/fhir/$export")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let unknown = encode(json!({"err": "something_else"}));
    let r = http().get(format!("{origin}/{unknown}/fhir/metadata")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("file_expired"), "the supported values are listed");
    // Ordinary unknown paths are still plain 404s.
    assert_eq!(http().get(format!("{origin}/nothing/fhir/metadata")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn rules_can_match_the_export_level_and_the_jobs_age() {
    let mut group_only = rule(Target::Kickoff, respond(503, BodyKind::Transient));
    group_only.level = Some("group".into());
    let mut group_files = rule(Target::File, respond(500, BodyKind::Outcome));
    group_files.level = Some("group".into());
    let late = rule(Target::Status, respond(500, BodyKind::Outcome)).when(Trigger::AfterS(3600.0));
    let server = MockServer::builder()
        .open()
        .patients(4)
        .fault(group_only.times(1))
        .fault(group_files)
        .fault(late)
        .start()
        .await;
    assert_eq!(export_get(format!("{}/$export", server.fhir_base())).send().await.unwrap().status(), 202);
    assert_eq!(
        export_get(format!("{}/Group/all-patients/$export", server.fhir_base())).send().await.unwrap().status(),
        503
    );
    let group = kickoff(&server, "Group/all-patients/$export", "_type=Patient").await;
    let (_, m) = manifest(&group).await; // the job is young: the after_s rule does not fire
    assert_eq!(http().get(&m.output[0].url).send().await.unwrap().status(), 500, "files of group jobs fail");
    let system = kickoff(&server, "$export", "_type=Patient").await;
    let (_, m) = manifest(&system).await;
    assert_eq!(http().get(&m.output[0].url).send().await.unwrap().status(), 200, "files of other levels do not");
    let mut wrong = rule(Target::File, Fault::Vanish);
    wrong.level = Some("everything".into());
    assert!(wrong.validate().unwrap_err().contains("level"));
}

#[tokio::test]
async fn a_partial_success_lists_a_real_error_file() {
    use bulkmock_server::faults::model::ManifestVariant;
    let server = MockServer::builder()
        .open()
        .patients(3)
        .fault(rule(Target::Status, Fault::Manifest { variant: ManifestVariant::PartialSuccess }))
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    assert_eq!(m.output.len(), 1, "data is still there");
    assert_eq!(m.error.len(), 1);
    let outcomes = common::lines(&m.error[0].url).await;
    assert_eq!(Some(outcomes.len() as u64), m.error[0].count);
    assert_eq!(outcomes[0]["resourceType"], "OperationOutcome");
    assert_eq!(outcomes[0]["issue"][0]["severity"], "error");
}

#[tokio::test]
async fn the_admin_api_can_require_a_secret() {
    let config = bulkmock_server::ServerConfig {
        open: true,
        admin: bulkmock_server::config::AdminConfig { enabled: true, any_host: false, token: Some("s3cret".into()) },
        ..Default::default()
    };
    let server = MockServer::builder().config(config).start().await;
    let url = format!("{}/_admin/faults", server.fhir_base().trim_end_matches("/fhir"));
    assert_eq!(http().get(&url).send().await.unwrap().status(), 401);
    assert_eq!(http().get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(http().get(&url).bearer_auth("s3cret").send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_endpoints_make_discovery_urls_paths_on_the_origin() {
    let server = MockServer::builder().fault(FaultRule::new(Target::Metadata, Fault::RelativeEndpoints)).start().await;
    let url = format!("{}/.well-known/smart-configuration", server.fhir_base());
    let doc: Value = http().get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["token_endpoint"], "/auth/token", "{doc}");
    let origin = server.fhir_base().trim_end_matches("/fhir");
    for (key, value) in doc.as_object().unwrap() {
        if key.ends_with("_endpoint") {
            assert!(!value.as_str().unwrap_or_default().starts_with(origin), "{key} is still absolute: {value}");
        }
    }
    // Resolved against the FHIR base, the path is the real token endpoint.
    assert_eq!(format!("{origin}{}", doc["token_endpoint"].as_str().unwrap()), server.token_url());
}

/// The fault acts on the CapabilityStatement's `oauth-uris` too: a client that
/// reads its token endpoint from `metadata` meets a relative URL as well (it
/// used to fire there without changing anything).
#[tokio::test(flavor = "multi_thread")]
async fn relative_endpoints_reach_the_capability_statements_oauth_uris() {
    let server = MockServer::builder().fault(FaultRule::new(Target::Metadata, Fault::RelativeEndpoints)).start().await;
    let url = format!("{}/metadata", server.fhir_base());
    let doc: Value = http().get(&url).send().await.unwrap().json().await.unwrap();
    let uris = &doc["rest"][0]["security"]["extension"][0]["extension"];
    assert_eq!(uris[0]["url"], "token", "{doc}");
    assert_eq!(uris[0]["valueUri"], "/auth/token", "{doc}");
    assert_eq!(uris[1]["valueUri"], "/auth/register", "{doc}");
}

/// A byte-offset fault whose offset lies past the end of the body it meets
/// cannot act: the body goes out whole, and the transcript says the rule did
/// not apply (and why) instead of marking it fired. A gzip body is measured
/// encoded, as it goes on the wire.
#[tokio::test]
async fn a_fault_past_the_end_of_the_body_is_recorded_as_not_applied() {
    let server = MockServer::builder()
        .open()
        .patients(3)
        .fault(rule(Target::File, Fault::Reset { after_bytes: 10_000_000, fraction: None }).times(1))
        .fault(rule(Target::File, Fault::Stall { after_bytes: 10_000_000, fraction: None, stall_ms: 5_000 }).times(1))
        .fault(
            rule(Target::File, Fault::Truncate { after_bytes: Some(10_000_000), fraction: None, at_line_end: false })
                .times(1),
        )
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    for _ in 0..3 {
        let body = http().get(&m.output[0].url).header("accept-encoding", "gzip").send().await.unwrap();
        assert_eq!(body.status(), 200);
        body.bytes().await.expect("the whole body arrives");
    }
    let files: Vec<_> = server.transcript().into_iter().filter(|e| e.path.contains("/bulkfiles/")).collect();
    assert_eq!(files.len(), 3);
    for (e, kind) in files.iter().zip(["reset", "stall", "truncate"]) {
        assert_eq!(e.fault, None, "not fired: {e:?}");
        let why = e.fault_not_applied.as_deref().expect("recorded as not applied");
        assert!(why.contains(&format!("{kind} after 10000000 bytes")) && why.contains("(gzip)"), "{why}");
    }
}

/// `fraction` places a reset or stall inside the body whatever its size and
/// encoding: the same rule cuts a plain download and a gzip one part way
/// (where an `after_bytes` that suits one would lie past the end of the other).
#[tokio::test]
async fn reset_and_stall_at_a_fraction_act_on_plain_and_gzip_bodies() {
    let server = MockServer::builder()
        .open()
        .patients(3)
        .fault(rule(Target::File, Fault::Stall { after_bytes: 0, fraction: Some(0.5), stall_ms: 10 }).times(2))
        .fault(rule(Target::File, Fault::Reset { after_bytes: 0, fraction: Some(0.5) }).times(2))
        .start()
        .await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let mut whole = Vec::new();
    for encoding in ["identity", "gzip", "identity", "gzip"] {
        let response = http().get(&m.output[0].url).header("accept-encoding", encoding).send().await.unwrap();
        let announced = response.content_length().expect("a length");
        whole.push((announced, response.bytes().await.map(|b| b.len() as u64)));
    }
    // The stalls deliver every byte; the resets cut the body after half of it.
    assert!(matches!(whole[0], (n, Ok(got)) if got == n), "{whole:?}");
    assert!(matches!(whole[1], (n, Ok(got)) if got == n), "{whole:?}");
    assert!(whole[2].1.is_err() && whole[3].1.is_err(), "{whole:?}");
    let files: Vec<_> = server.transcript().into_iter().filter(|e| e.path.contains("/bulkfiles/")).collect();
    assert_eq!(files.len(), 4);
    for e in &files {
        assert!(e.fault.is_some() && e.fault_not_applied.is_none(), "fired: {e:?}");
    }
    let (plain, gzip) = (whole[0].0, whole[1].0);
    assert!(gzip < plain / 2, "the gzip body is much shorter: {gzip} of {plain}");
    assert_eq!(files[2].bytes, plain / 2, "the plain reset came after half the plain body");
    assert_eq!(files[3].bytes, gzip / 2, "the gzip reset came after half the gzip body");
}

#[test]
fn a_fraction_is_checked() {
    let both = rule(Target::File, Fault::Reset { after_bytes: 10, fraction: Some(0.5) });
    assert!(both.validate().unwrap_err().contains("not both"));
    let whole = rule(Target::File, Fault::Stall { after_bytes: 0, fraction: Some(1.0), stall_ms: 1 });
    assert!(whole.validate().unwrap_err().contains("above 0 and below 1"));
}

/// Through a profile base, a body fault on a JSON document acts as it does on
/// the plain base: a manifest truncated after 100 bytes arrives cut (its
/// announced length above what is sent, its URLs still carrying the profile),
/// never as a 500 from the layer that restores the profile's URLs.
#[tokio::test]
async fn a_truncated_manifest_through_a_profile_base_arrives_cut() {
    use bulkmock_server::faults::FaultPlan;
    use bulkmock_server::faults::profile::encode;
    let server = MockServer::builder().open().patients(3).start().await;
    let cut = Fault::Truncate { after_bytes: Some(200), fraction: None, at_line_end: false };
    let plan = FaultPlan { rules: vec![rule(Target::Status, cut).times(1)] };
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let base = format!("{origin}/p/{}/fhir", encode(&plan));
    let r = export_get(format!("{base}/$export?_type=Patient")).send().await.unwrap();
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    poll_until_done(&status.replace(&base, &format!("{origin}/fhir"))).await;
    let (received, ended) = raw_get_until_end(&status).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let announced: usize = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
        .expect("a length");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.len() < announced, "cut: {} of {announced} bytes ({ended:?})", body.len());
    assert!(body.contains(&format!("{origin}/p/eyJ")), "URLs keep the profile: {body}");
    let exchange = server.transcript().into_iter().find(|e| e.target == Some(Target::Status) && e.fault.is_some());
    assert!(exchange.is_some(), "the truncate fired");
}

/// A cut at a line end moves forward to the end of the line the offset falls
/// in; when that line is the body's last, nothing is cut: the body goes out
/// whole and the transcript says the rule did not apply, never that it fired.
#[tokio::test]
async fn a_cut_at_a_line_end_in_the_last_line_is_recorded_as_not_applied() {
    let cut = Fault::Truncate { after_bytes: Some(10), fraction: None, at_line_end: true };
    let server = MockServer::builder().open().patients(1).fault(rule(Target::File, cut).times(1)).start().await;
    let (_, m) = manifest(&kickoff(&server, "$export", "_type=Patient").await).await;
    let (headers, body) = raw_get(&m.output[0].url).await;
    assert_eq!(body.len() as u64, content_length(&headers), "the one-line body goes out whole");
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 1);
    let e = server.transcript().into_iter().find(|e| e.path.contains("/bulkfiles/")).unwrap();
    assert_eq!(e.fault, None, "not fired: {e:?}");
    let why = e.fault_not_applied.as_deref().expect("recorded as not applied");
    assert!(why.contains("at the line end from byte 10"), "{why}");
}
