//! Property tests (issue 12, item 1): random input at every parser the mock
//! exposes. No panic, no 5xx; every rejection a well-formed OAuth error (token
//! endpoint) or OperationOutcome (FHIR routes).
//!
//! Requests go through the in-process router (`tower::ServiceExt::oneshot`),
//! no socket. Case counts are bounded (see [`CASES`]) so the whole file runs in
//! a few seconds; each target prints its count (`--nocapture` shows them) and
//! BENCHMARKS.md records them.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use bulkmock_server::app::{AppState, router};
use bulkmock_server::config::ServerConfig;
use bulkmock_server::export::elements::Elements;
use bulkmock_server::export::type_filter::TypeQuery;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Cases per target: (target, cases). Kept in one table so the numbers in
/// BENCHMARKS.md can be checked against it.
const CASES: &[(&str, u32)] = &[
    ("token_form_bytes", 256),
    ("token_form_fields", 256),
    ("kickoff_get_query", 192),
    ("kickoff_post_parameters", 192),
    ("type_filter_and_elements", 1024),
    ("fault_plan_text", 1024),
    ("profile_segment", 256),
    ("range_header", 512),
];

fn config(target: &str) -> Config {
    let cases = CASES.iter().find(|(t, _)| *t == target).expect("target in CASES").1;
    eprintln!("proptest {target}: {cases} cases");
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// One runtime and two servers (with authorization, and open) shared by every case.
struct World {
    runtime: tokio::runtime::Runtime,
    auth: Arc<AppState>,
    open: Arc<AppState>,
    /// Path of a complete file of the open server, for `Range` requests.
    file: OnceLock<(String, Vec<u8>)>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let base = ServerConfig { patients: 3, job_duration: std::time::Duration::ZERO, ..ServerConfig::default() };
        let _guard = runtime.enter();
        let auth = AppState::new(base.clone(), "http://127.0.0.1:1").unwrap();
        let open =
            AppState::new(ServerConfig { open: true, count_before_accepting: true, ..base }, "http://127.0.0.1:1")
                .unwrap();
        World { runtime, auth, open, file: OnceLock::new() }
    })
}

/// Sends one request through a fresh router of `state`; returns status, headers and body.
fn send(state: &Arc<AppState>, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let w = world();
    w.runtime.block_on(async {
        let response = router(Arc::clone(state)).oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, body.to_vec())
    })
}

/// A 4xx whose body is an OperationOutcome with at least one issue.
fn assert_outcome(status: StatusCode, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(status.is_client_error(), "status {status}: {}", String::from_utf8_lossy(body));
    let v: Value = serde_json::from_slice(body).map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
    prop_assert_eq!(&v["resourceType"], "OperationOutcome");
    prop_assert!(v["issue"].as_array().is_some_and(|i| !i.is_empty()), "{v}");
    Ok(())
}

fn kickoff(method: &str, uri: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::ACCEPT, "application/fhir+json")
        .header("prefer", "respond-async")
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .body(body)
        .unwrap()
}

/// A 202 or a 4xx OperationOutcome; nothing else.
fn assert_kickoff_answer(status: StatusCode, body: &[u8]) -> Result<(), TestCaseError> {
    if status != StatusCode::ACCEPTED {
        assert_outcome(status, body)?;
    }
    Ok(())
}

fn token_request(body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/auth/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// An RFC 6749 error: 400 or 401, JSON with string `error` and `error_description`.
fn assert_oauth_error(status: StatusCode, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(status == 400 || status == 401, "status {status}: {}", String::from_utf8_lossy(body));
    let v: Value = serde_json::from_slice(body).map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
    prop_assert!(v["error"].is_string() && v["error_description"].is_string(), "{v}");
    Ok(())
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Assertion-like strings: random text, three random base64url parts, or a
/// header and claims that are JSON but wrong in random ways.
fn assertion() -> impl Strategy<Value = String> {
    let part = proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| b64(&b));
    let json_part = (
        prop_oneof![
            Just("ES384".to_string()),
            Just("RS384".to_string()),
            Just("none".to_string()),
            Just("HS256".to_string()),
            ".{0,8}"
        ],
        prop_oneof![Just("bulkmock-demo".to_string()), ".{0,12}"],
        any::<i64>(),
    )
        .prop_map(|(alg, iss, exp)| {
            let header = json!({"alg": alg, "typ": "JWT", "kid": iss});
            let claims =
                json!({"iss": iss, "sub": iss, "aud": "http://127.0.0.1:1/auth/token", "exp": exp, "jti": iss});
            format!("{}.{}.", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
        });
    prop_oneof![
        ".{0,80}",
        (part.clone(), part.clone(), part).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        (json_part, proptest::collection::vec(any::<u8>(), 0..96)).prop_map(|(hc, sig)| format!("{hc}{}", b64(&sig))),
    ]
}

fn maybe(s: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(0.8, s)
}

proptest! {
    #![proptest_config(config("token_form_bytes"))]
    #[test]
    fn token_endpoint_answers_random_bytes_with_an_oauth_error(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (status, _, out) = send(&world().auth, token_request(body));
        assert_oauth_error(status, &out)?;
    }
}

proptest! {
    #![proptest_config(config("token_form_fields"))]
    #[test]
    fn token_endpoint_answers_random_forms_with_an_oauth_error(
        grant in maybe(prop_oneof![Just("client_credentials".to_string()), ".{0,20}"]),
        kind in maybe(prop_oneof![Just("urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()), ".{0,20}"]),
        assertion in maybe(assertion()),
        scope in maybe(prop_oneof![Just("system/*.rs".to_string()), "[a-zA-Z/*.?=&: ]{0,40}", ".{0,40}"]),
        extra in proptest::collection::vec((".{0,10}", ".{0,10}"), 0..3),
    ) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("grant_type", grant), ("client_assertion_type", kind), ("client_assertion", assertion), ("scope", scope)] {
            if let Some(v) = v {
                form.append_pair(k, &v);
            }
        }
        for (k, v) in &extra {
            form.append_pair(k, v);
        }
        let (status, _, out) = send(&world().auth, token_request(form.finish().into_bytes()));
        assert_oauth_error(status, &out)?;
    }
}

/// Names of kick-off parameters, real and not.
fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("_type".to_string()),
        Just("_since".to_string()),
        Just("_until".to_string()),
        Just("_outputFormat".to_string()),
        Just("_typeFilter".to_string()),
        Just("_elements".to_string()),
        Just("patient".to_string()),
        Just("includeAssociatedData".to_string()),
        Just("allowPartialManifests".to_string()),
        Just("organizeOutputBy".to_string()),
        "[a-zA-Z_]{1,12}",
    ]
}

/// Values that look like what the parameters take, or do not.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "(Patient|Observation|Condition|Foo|)(,(Patient|Encounter|x))?",
        "[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9:]{2,8}(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?",
        "(Patient|Observation|Condition|patient|)\\?[a-z_:.-]{1,12}=[a-z0-9|,:.<>=!-]{0,12}(&[a-z_]{1,8}=[^&]{0,6})?",
        "(Patient|Observation)?\\.?[a-zA-Z.]{0,20}",
        ".{0,30}",
    ]
}

proptest! {
    #![proptest_config(config("kickoff_get_query"))]
    #[test]
    fn get_kickoffs_answer_202_or_an_operation_outcome(
        pairs in proptest::collection::vec((param_name(), param_value()), 0..4),
        level in prop_oneof![Just("/fhir/$export"), Just("/fhir/Patient/$export"), Just("/fhir/Group/all-patients/$export")],
    ) {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let (status, _, out) = send(&world().open, kickoff("GET", &format!("{level}?{query}"), Body::empty()));
        assert_kickoff_answer(status, &out)?;
    }
}

/// A `Parameters` parameter with a random name and a value of a random `value[x]` kind.
fn parameter() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just("valueString".to_string()),
        Just("valueInstant".to_string()),
        Just("valueBoolean".to_string()),
        Just("valueReference".to_string()),
        Just("valueCode".to_string()),
        Just("valueInteger".to_string()),
        "value[A-Za-z]{0,8}",
    ];
    let value = prop_oneof![
        param_value().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        param_value().prop_map(|r| json!({"reference": r})),
        Just(Value::Null),
        Just(json!([1, "x"])),
    ];
    (param_name(), kind, value).prop_map(|(name, kind, value)| json!({"name": name, kind: value}))
}

/// Parameter entries that are not well-formed: no name, a name of the wrong
/// JSON type, or not an object at all.
fn loose_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        param_value().prop_map(|v| json!({"valueString": v})),
        any::<i64>().prop_map(|n| json!({"name": n, "valueString": "Patient"})),
        Just(json!({"name": null})),
        Just(json!([])),
        param_value().prop_map(Value::from),
        Just(Value::Null),
    ]
}

/// Bodies: a `Parameters` resource of random parameters, or random JSON and text.
fn post_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(parameter(), 0..5)
            .prop_map(|p| json!({"resourceType": "Parameters", "parameter": p}).to_string().into_bytes()),
        1 => proptest::collection::vec(loose_entry(), 0..4)
            .prop_map(|p| json!({"resourceType": "Parameters", "parameter": p}).to_string().into_bytes()),
        1 => prop_oneof![Just("Parameters".to_string()), Just("Patient".to_string()), ".{0,10}"]
            .prop_map(|r| json!({"resourceType": r, "parameter": {"name": "_type"}}).to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..128),
    ]
}

proptest! {
    #![proptest_config(config("kickoff_post_parameters"))]
    #[test]
    fn post_kickoffs_answer_202_or_an_operation_outcome(body in post_body()) {
        let (status, _, out) = send(&world().open, kickoff("POST", "/fhir/Patient/$export", Body::from(body)));
        assert_kickoff_answer(status, &out)?;
    }
}

proptest! {
    #![proptest_config(config("type_filter_and_elements"))]
    #[test]
    fn type_filter_and_elements_parsers_never_panic(
        filter in prop_oneof![param_value(), ".{0,60}", "[A-Za-z]{0,10}\\?([a-z_:.-]{0,10}=[^&]{0,10}&?){0,4}"],
        elements in proptest::collection::vec(param_value(), 0..4),
        resource in prop_oneof![
            Just(json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"coding": [{"system": "s", "code": "c"}]}})),
            Just(json!({"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1970-01-01"})),
            Just(json!({"resourceType": "Condition", "id": "c", "onsetDateTime": [], "code": null})),
            Just(json!({"resourceType": "Patient", "id": "m", "meta": [1], "gender": "male"})),
            Just(json!({"resourceType": "Patient", "id": "t", "meta": {"tag": {}}, "gender": "male"})),
        ],
    ) {
        if let Ok(q) = TypeQuery::parse(&filter) {
            let _ = q.matches(&resource);
        }
        if let Ok(e) = Elements::parse(&elements) {
            let mut r = resource.clone();
            e.apply(&mut r);
            prop_assert_eq!(&r["resourceType"], &resource["resourceType"], "_elements keeps resourceType");
        }
    }
}

/// Text shaped like a fault plan: `[[fault]]` tables of known and unknown
/// keys with random values, or random text.
fn plan_text() -> impl Strategy<Value = (String, bool)> {
    let key = prop_oneof![
        Just("on".to_string()),
        Just("times".to_string()),
        Just("when".to_string()),
        Just("fault".to_string()),
        Just("resource_type".to_string()),
        Just("probability".to_string()),
        "[a-z_]{1,8}"
    ];
    let value = prop_oneof![
        Just("\"status\"".to_string()),
        Just("\"file\"".to_string()),
        Just("{ kind = \"respond\", status = 503 }".to_string()),
        Just("{ kind = \"truncate\", fraction = 1.5 }".to_string()),
        Just("{ first = 0 }".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        ".{0,12}",
        "\"\\PC{0,12}\"",
    ];
    let toml = proptest::collection::vec(proptest::collection::vec((key, value), 0..4), 0..3).prop_map(|rules| {
        rules
            .iter()
            .map(|r| {
                let lines: Vec<String> = r.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("[[fault]]\n{}\n", lines.join("\n"))
            })
            .collect::<String>()
    });
    prop_oneof![
        toml.prop_map(|t| (t, false)),
        "\\PC{0,80}".prop_map(|t| (t, false)),
        "\\PC{0,80}".prop_map(|t| (t, true)),
        proptest::collection::vec(parameter(), 0..3).prop_map(|v| (json!({"fault": v}).to_string(), true)),
    ]
}

proptest! {
    #![proptest_config(config("fault_plan_text"))]
    #[test]
    fn fault_plans_parse_or_name_the_file((text, json) in plan_text()) {
        let name = if json { "plan.json" } else { "plan.toml" };
        if let Err(message) = bulkmock_server::faults::file::parse(&text, name, json) {
            prop_assert!(message.starts_with(name), "{message}");
        }
    }
}

proptest! {
    #![proptest_config(config("profile_segment"))]
    #[test]
    fn profile_segments_never_give_a_5xx(
        segment in prop_oneof![
            "[A-Za-z0-9_%.~-]{0,60}",
            ".{0,12}".prop_map(|s| b64(s.as_bytes())),
            proptest::collection::vec(any::<u8>(), 0..48).prop_map(|b| b64(&b)),
            param_value().prop_map(|s| b64(json!({"status": s, "fault": [s]}).to_string().as_bytes())),
        ],
        rest in prop_oneof![Just("fhir/metadata"), Just("fhir/$export"), Just("fhir/.well-known/smart-configuration"), Just("auth/token"), Just("")],
    ) {
        let Ok(request) = Request::builder().uri(format!("/p/{segment}/{rest}")).body(Body::empty()) else {
            return Ok(()); // not a URI at all: hyper would refuse it before the router
        };
        let (status, _, out) = send(&world().open, request);
        prop_assert!(!status.is_server_error(), "{status}: {}", String::from_utf8_lossy(&out));
        if status.is_client_error() {
            // An OperationOutcome on FHIR routes, an OAuth error at the token endpoint.
            let v: Value = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
            prop_assert!(v["resourceType"] == "OperationOutcome" || v["error"].is_string(), "{v}");
        }
    }
}

/// For a plain single range (`bytes=A-B`, `bytes=A-`, `bytes=-N`, digits only,
/// no `If-Range`): the span RFC 9110 says it selects in a body of `len` bytes,
/// or `None` when it selects nothing (416).
fn model(range: &str, len: usize) -> Option<Option<(usize, usize)>> {
    let (a, b) = range.strip_prefix("bytes=")?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() < 19 && s.bytes().all(|c| c.is_ascii_digit());
    let num = |s: &str| s.parse::<usize>().unwrap();
    match (digits(a), digits(b), a.is_empty(), b.is_empty()) {
        (true, true, _, _) if num(a) <= num(b) => Some((num(a) < len).then(|| (num(a), num(b).min(len - 1)))),
        (true, _, _, true) => Some((num(a) < len).then(|| (num(a), len - 1))),
        (_, true, true, _) => Some((num(b) > 0).then(|| (len - num(b).min(len), len - 1))),
        _ => None,
    }
}

/// The path and the full body of the first file of a complete job on the open server.
fn file() -> &'static (String, Vec<u8>) {
    let w = world();
    w.file.get_or_init(|| {
        let (status, _, body) = send(&w.open, kickoff("GET", "/fhir/Patient/$export?_type=Patient", Body::empty()));
        assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
        let job = &w.open.jobs.history()[0];
        let poll = Request::builder().uri(format!("/fhir/bulkstatus/{}", job.id)).body(Body::empty()).unwrap();
        let (status, _, body) = send(&w.open, poll);
        assert_eq!(status, StatusCode::OK, "complete at the first poll: {}", String::from_utf8_lossy(&body));
        let manifest: Value = serde_json::from_slice(&body).unwrap();
        let path = manifest["output"][0]["url"].as_str().unwrap().trim_start_matches("http://127.0.0.1:1").to_string();
        let (status, _, body) = send(&w.open, Request::builder().uri(&path).body(Body::empty()).unwrap());
        assert_eq!(status, StatusCode::OK);
        assert!(body.len() > 100, "a file worth slicing");
        (path, body)
    })
}

proptest! {
    #![proptest_config(config("range_header"))]
    #[test]
    fn range_headers_get_200_206_or_416(
        range in prop_oneof![
            "bytes=[0-9]{0,21}-[0-9]{0,21}",
            (0u32..6000, 0u32..6000).prop_map(|(a, b)| format!("bytes={a}-{b}")),
            (0u32..6000).prop_map(|a| format!("bytes={a}-")),
            (0u32..6000).prop_map(|n| format!("bytes=-{n}")),
            "bytes= ?-?[0-9]{0,25} ?",
            "bytes=[0-9,-]{0,30}",
            "[a-z]{0,6}=[0-9]{0,4}-[0-9]{0,4}",
            "[ -~]{0,40}",
        ],
        if_range in proptest::option::weighted(0.2, "\"?[ -~]{0,20}\"?"),
    ) {
        let (path, full) = file();
        let mut request = Request::builder().uri(path);
        request = request.header(header::RANGE, range.as_str());
        if let Some(v) = &if_range {
            request = request.header(header::IF_RANGE, v.as_str());
        }
        let Ok(request) = request.body(Body::empty()) else { return Ok(()) };
        let (status, headers, out) = send(&world().open, request);
        prop_assert!(
            [200, 206, 416].contains(&status.as_u16()),
            "{range:?}: {status} {}", String::from_utf8_lossy(&out)
        );
        if if_range.is_none() && let Some(expected) = model(&range, full.len()) {
            let got = headers.get(header::CONTENT_RANGE).map(|v| v.to_str().unwrap().to_string());
            let want = match expected {
                Some((a, b)) => format!("bytes {a}-{b}/{}", full.len()),
                None => format!("bytes */{}", full.len()),
            };
            prop_assert_eq!(got.as_deref(), Some(want.as_str()), "{:?}", range);
        }
        match status.as_u16() {
            200 => prop_assert_eq!(&out, full, "a 200 is the whole file"),
            206 => {
                // The body is exactly the bytes Content-Range names.
                let range = headers[header::CONTENT_RANGE].to_str().unwrap();
                let spec = range.strip_prefix("bytes ").unwrap();
                let (span, len) = spec.split_once('/').unwrap();
                let (a, b) = span.split_once('-').unwrap();
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                prop_assert_eq!(len.parse::<usize>().unwrap(), full.len());
                prop_assert!(a <= b && b < full.len(), "{range}");
                prop_assert_eq!(&out[..], &full[a..=b], "{}", range);
            }
            _ => {
                prop_assert_eq!(headers[header::CONTENT_RANGE].to_str().unwrap(), format!("bytes */{}", full.len()));
                assert_outcome(status, &out)?;
            }
        }
    }
}
