//! Fault profiles embedded in the base URL, for clients that cannot be
//! reconfigured: `http://host:port/p/{base64url JSON}/fhir` is a FHIR base
//! whose requests get that profile's faults (checked before the server's).
//! The JSON is a plan (`{"fault": [...]}`) or a list of rules. Every URL the
//! server hands out on such a base (Content-Location, Location, manifest and
//! discovery URLs) keeps the prefix, so a client never leaves its profile.
//!
//! A profile can also carry quirks (`docs/quirks.md`): `"quirks": [...]` in
//! the plan object, or the readable segment `/p/quirks:no-until,long-queue=0.01/fhir`
//! (`:` and `,` are not base64url, so the two forms cannot be confused).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{FaultEngine, FaultPlan, FaultRule};
use crate::app::AppState;

/// The engine of the profile a request came through.
#[derive(Clone)]
pub struct ProfileEngine(pub Arc<FaultEngine>);

/// The path prefix of the profile a request came through (`p/{profile}` or
/// the reference server's settings segment), for URLs that must name it
/// exactly: the token endpoint checks `aud` against `{origin}/{prefix}/auth/token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePrefix(pub String);

/// Export settings a profile overrides (the reference server's `dur` and `page`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KickoffOverrides {
    /// How long jobs started through this profile stay in progress.
    pub job_duration: Option<std::time::Duration>,
    /// Resources per file for jobs started through this profile.
    pub resources_per_file: Option<u64>,
}

/// A decoded profile: its rules and export overrides.
struct Profile {
    engine: Arc<FaultEngine>,
    overrides: KickoffOverrides,
    quirks: crate::quirks::Quirks,
}

/// Profiles seen so far, by their URL segment.
#[derive(Default)]
pub struct Profiles {
    engines: Mutex<HashMap<String, Arc<Profile>>>,
}

/// The `err` values of the SMART reference server that bulkmock reproduces.
pub const REFERENCE_ERRORS: &[&str] =
    &["file_generation_failed", "some_file_generation_failed", "transient_error", "file_expired"];

/// Decodes the SMART reference bulk data server's embedded settings (a
/// base64url JSON object in the path before `/fhir`), so its users can switch
/// base URLs without changing their client: `err` (see [`REFERENCE_ERRORS`]),
/// `dur` (export seconds), `page` (resources per file), `tlt` (token lifetime
/// in minutes). `m`, `del`, `secure`, `stu` and `opp` are accepted and have no
/// effect here (size comes from `--patients`, deletions are built into the
/// data, authorization from `--open`).
pub fn decode_reference(segment: &str) -> Option<Result<(FaultPlan, KickoffOverrides), String>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    let settings: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
    const KEYS: &[&str] = &["err", "dur", "page", "tlt", "m", "del", "secure", "stu", "opp", "fileError", "extended"];
    if settings.is_empty() || !settings.keys().all(|k| KEYS.contains(&k.as_str())) {
        return None;
    }
    let number = |k: &str| settings.get(k).and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()));
    let mut rules = Vec::new();
    let outcome = |status: u16, body: super::BodyKind, code: &str, message: &str| {
        super::Fault::respond(status, body).with_code(code).with_message(message)
    };
    match settings.get("err").and_then(|v| v.as_str()).unwrap_or("") {
        "" => {}
        "file_generation_failed" => rules.push(FaultRule::new(
            super::Target::Kickoff,
            outcome(500, super::BodyKind::Outcome, "processing", "File generation failed"),
        )),
        "some_file_generation_failed" => {
            for i in (1..1000).step_by(2) {
                let mut rule = FaultRule::new(
                    super::Target::File,
                    outcome(500, super::BodyKind::Outcome, "processing", "Failed to export this file"),
                );
                rule.file_index = Some(i);
                rules.push(rule);
            }
        }
        "transient_error" => rules.push(
            FaultRule::new(
                super::Target::Status,
                outcome(
                    500,
                    super::BodyKind::Transient,
                    "transient",
                    "An unknown error ocurred (transient_error). Please try again.",
                ),
            )
            .times(1),
        ),
        "file_expired" => rules.push(FaultRule::new(
            super::Target::File,
            outcome(410, super::BodyKind::Outcome, "expired", "Access to the target resource is no longer available"),
        )),
        other => {
            return Some(Err(format!(
                "the reference server setting err={other:?} is not reproduced; supported: {}",
                REFERENCE_ERRORS.join(", ")
            )));
        }
    }
    if let Some(minutes) = number("tlt").filter(|m| *m > 0.0) {
        rules.push(FaultRule::new(
            super::Target::Token,
            super::Fault::TokenLifetime { lifetime_s: (minutes * 60.0) as u64 },
        ));
    }
    let overrides = KickoffOverrides {
        job_duration: number("dur").map(|s| std::time::Duration::from_secs_f64(s.max(0.0))),
        resources_per_file: number("page").filter(|p| *p >= 1.0).map(|p| p as u64),
    };
    Some(Ok((FaultPlan { rules }, overrides)))
}

/// Largest JSON body rewritten to keep the profile prefix.
const MAX_JSON: usize = 64 * 1024 * 1024;

/// Decodes a profile segment into a validated plan.
pub fn decode(segment: &str) -> Result<FaultPlan, String> {
    decode_with_quirks(segment).map(|(plan, _)| plan)
}

/// Decodes a profile segment into a validated plan and its quirks: a
/// base64url plan (`{"fault": [...], "quirks": [...]}` or a list of rules),
/// or `quirks:a,b` (quirks only).
pub fn decode_with_quirks(segment: &str) -> Result<(FaultPlan, crate::quirks::Quirks), String> {
    if let Some(list) = segment.strip_prefix("quirks:") {
        let list = percent_decode(list);
        let quirks = crate::quirks::Quirks::parse(&list).map_err(|e| format!("the profile in the URL: {e}"))?;
        return Ok((FaultPlan::default(), quirks));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| "the fault profile in the URL is not base64url (or quirks:a,b)".to_string())?;
    let (plan, quirks): (FaultPlan, _) = match serde_json::from_slice::<Vec<FaultRule>>(&bytes) {
        Ok(rules) => (FaultPlan { rules }, crate::quirks::Quirks::none()),
        Err(_) => {
            let mut value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("the fault profile in the URL is not a fault plan: {e}"))?;
            let quirks = match value.as_object_mut().and_then(|o| o.remove("quirks")) {
                None => crate::quirks::Quirks::none(),
                Some(q) => serde_json::from_value(q).map_err(|e| format!("the profile in the URL: quirks: {e}"))?,
            };
            let plan = serde_json::from_value(value)
                .map_err(|e| format!("the fault profile in the URL is not a fault plan: {e}"))?;
            (plan, quirks)
        }
    };
    for (i, rule) in plan.rules.iter().enumerate() {
        rule.validate().map_err(|e| format!("the fault profile in the URL: rule {}: {e}", i + 1))?;
    }
    Ok((plan, quirks))
}

/// `%2C` and friends back to characters (clients may escape the comma list).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a plan as a profile segment (for building profile URLs).
pub fn encode(plan: &FaultPlan) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(plan).expect("a plan serialises"))
}

/// The outer middleware: strips `/p/{profile}`, routes the rest, restores the prefix in URLs.
pub async fn layer(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    // `/p/{profile}/...` (bulkmock plans) or `/{settings}/fhir|auth/...` (the reference server's).
    let (prefix, segment, inner_path, reference) = if let Some(rest) = path.strip_prefix("/p/") {
        let Some((segment, inner)) = rest.split_once('/') else {
            return crate::error::FhirError::not_found("a profile URL looks like /p/{profile}/fhir/...")
                .into_response();
        };
        (format!("p/{segment}"), segment.to_string(), format!("/{inner}"), false)
    } else {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (first, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let routed = matches!(first, "fhir" | "auth" | "_admin" | "p");
        if routed || !(rest == "fhir" || rest.starts_with("fhir/") || rest.starts_with("auth/")) {
            return next.run(request).await;
        }
        (first.to_string(), first.to_string(), format!("/{rest}"), true)
    };
    let cached = state.profiles.engines.lock().expect("profiles").get(&segment).cloned();
    let profile = match cached {
        Some(p) => p,
        None => {
            let decoded = if reference {
                match decode_reference(&segment) {
                    Some(result) => result.map(|(plan, o)| (plan, o, crate::quirks::Quirks::none())),
                    None => return next.run(request).await, // not settings: an ordinary path
                }
            } else {
                decode_with_quirks(&segment).map(|(plan, quirks)| (plan, KickoffOverrides::default(), quirks))
            };
            match decoded {
                Ok((plan, overrides, quirks)) => {
                    let engine = Arc::new(FaultEngine::new(plan, state.config.seed ^ 0x7072_6f66));
                    let profile = Arc::new(Profile { engine, overrides, quirks });
                    state.profiles.engines.lock().expect("profiles").insert(segment.clone(), Arc::clone(&profile));
                    profile
                }
                Err(message) => {
                    return crate::error::FhirError::new(
                        StatusCode::BAD_REQUEST,
                        bulkmock_wire::IssueType::Invalid,
                        message,
                    )
                    .into_response();
                }
            }
        }
    };
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    if let Ok(uri) = format!("{inner_path}{query}").parse::<Uri>() {
        *request.uri_mut() = uri;
    }
    request.extensions_mut().insert(ProfileEngine(Arc::clone(&profile.engine)));
    request.extensions_mut().insert(profile.overrides);
    request.extensions_mut().insert(crate::quirks::ProfileQuirks(profile.quirks.clone()));
    request.extensions_mut().insert(ProfilePrefix(prefix.clone()));
    let response = next.run(request).await;
    if inner_path == "/auth/token" {
        // Token responses hold no URLs to rewrite; an error's description quotes
        // the client's own `aud`, which must reach it unchanged.
        return response;
    }
    keep_prefix(&state, &inner_path, response, &prefix).await
}

/// Puts the profile prefix (`p/{profile}` or the reference settings) back into
/// the URLs of a response: its `Location` and `Content-Location`, and the body
/// of a JSON document that may carry URLs (manifest, status, OperationOutcome,
/// discovery, CapabilityStatement). File and attachment bodies stream through
/// untouched, whatever their encoding and size (SRV-127, SRV-186).
async fn keep_prefix(state: &AppState, inner_path: &str, response: Response, prefix: &str) -> Response {
    let fix = Prefixer::new(state.origin(), prefix);
    let (mut parts, body) = response.into_parts();
    for name in [header::CONTENT_LOCATION, header::LOCATION] {
        if let Some(v) = parts.headers.get(&name).and_then(|v| v.to_str().ok()).map(|v| fix.apply(v))
            && let Ok(v) = HeaderValue::from_str(&v)
        {
            parts.headers.insert(name, v);
        }
    }
    let is_data = is_data_route(inner_path) && parts.status.is_success();
    // The inner layers stream every body; the length they announce says how large it is.
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large = declared.is_some_and(|n| n > MAX_JSON as u64);
    if is_data || too_large || !is_json_document(&parts.headers) {
        return Response::from_parts(parts, body);
    }
    let (bytes, cut) = read_document(body).await;
    let rewritten = match content_encoding(&parts.headers).as_deref() {
        None | Some("identity") => fix.body(&bytes),
        Some("gzip" | "x-gzip") if cut.is_none() => {
            gunzip(&bytes).and_then(|plain| fix.body(&plain).and_then(|b| gzip(&b)))
        }
        Some(_) => None, // an encoding this layer does not read, or a cut gzip body: sent as it came
    };
    let body = rewritten.unwrap_or_else(|| bytes.to_vec());
    match cut {
        None => {
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            Response::from_parts(parts, Body::from(body))
        }
        // A body fault (truncate, reset) cut the document: what arrived goes out,
        // rewritten, and the body fails there as it did inside, its announced
        // length (grown by the rewrite) still above what is sent.
        Some(error) => {
            let grown = body.len().saturating_sub(bytes.len()) as u64;
            let announced = declared.map_or(body.len() as u64 + 1, |n| (n + grown).max(body.len() as u64 + 1));
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(announced));
            use futures_util::StreamExt;
            let sent = futures_util::stream::once(async move { Ok::<_, axum::Error>(axum::body::Bytes::from(body)) });
            let failed = futures_util::stream::once(async move {
                // As the fault does: time for the connection to write what was sent.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(error)
            });
            Response::from_parts(parts, Body::from_stream(sent.chain(failed)))
        }
    }
}

/// Reads a JSON document's body (within [`MAX_JSON`]): the bytes, and the
/// error that cut it part way, if one did.
async fn read_document(body: Body) -> (Vec<u8>, Option<axum::Error>) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) if bytes.len() + chunk.len() <= MAX_JSON => bytes.extend_from_slice(&chunk),
            Ok(_) => return (bytes, Some(axum::Error::new("a JSON document over 64 MiB"))),
            Err(e) => return (bytes, Some(e)),
        }
    }
    (bytes, None)
}

/// Rewrites this server's URLs (`{origin}/fhir`, `{origin}/auth`) to a profile's.
struct Prefixer {
    from: [String; 2],
    to: [String; 2],
}

impl Prefixer {
    fn new(origin: &str, prefix: &str) -> Self {
        let from = [format!("{origin}/fhir"), format!("{origin}/auth")];
        let to = [format!("{origin}/{prefix}/fhir"), format!("{origin}/{prefix}/auth")];
        Prefixer { from, to }
    }

    fn apply(&self, s: &str) -> String {
        s.replace(&self.from[0], &self.to[0]).replace(&self.from[1], &self.to[1])
    }

    /// The rewritten body, or `None` when it is not UTF-8 (then sent as it came).
    fn body(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        std::str::from_utf8(bytes).ok().map(|text| self.apply(text).into_bytes())
    }
}

/// Whether an (inner) path serves export data: file downloads and attachments.
fn is_data_route(inner_path: &str) -> bool {
    inner_path.starts_with("/fhir/bulkfiles/") || inner_path.starts_with("/fhir/attachments/")
}

/// Whether the body is one JSON document (`application/json`, `application/fhir+json`,
/// any `+json`), not NDJSON (`application/fhir+ndjson`) or anything else.
fn is_json_document(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || essence == "application/json+fhir" || essence.ends_with("+json")
}

/// The response's `Content-Encoding`, lower-cased.
fn content_encoding(headers: &HeaderMap) -> Option<String> {
    headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_ascii_lowercase())
}

fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut plain).ok()?;
    Some(plain)
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> Response {
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        if let Some(e) = encoding {
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_str(e).unwrap());
        }
        r
    }

    async fn through(path: &str, r: Response) -> (HeaderMap, Vec<u8>) {
        let state = AppState::new(crate::config::ServerConfig { patients: 1, ..Default::default() }, "http://h:1")
            .expect("state");
        let (parts, body) = keep_prefix(&state, path, r, "p/x").await.into_parts();
        (parts.headers, axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec())
    }

    #[tokio::test]
    async fn gzip_json_documents_are_rewritten_and_stay_gzip() {
        let doc = br#"{"url":"http://h:1/fhir/bulkstatus/j"}"#;
        let (headers, body) =
            through("/fhir/bulkstatus/j", response("application/json", Some("gzip"), gzip(doc).unwrap())).await;
        assert_eq!(headers[header::CONTENT_LENGTH], body.len().to_string().as_str());
        assert_eq!(gunzip(&body).expect("valid gzip"), br#"{"url":"http://h:1/p/x/fhir/bulkstatus/j"}"#);
    }

    #[tokio::test]
    async fn ndjson_and_data_routes_pass_untouched() {
        let line = b"{\"url\":\"http://h:1/fhir/x\"}\n".to_vec();
        for (path, ty) in [
            ("/fhir/bulkfiles/j/0.Patient.ndjson", "application/fhir+ndjson"),
            ("/fhir/bulkfiles/j/0.Patient.ndjson", "application/json"),
            ("/fhir/attachments/a", "application/json"),
            ("/fhir/Group", "text/plain"),
        ] {
            let (_, body) = through(path, response(ty, None, line.clone())).await;
            assert_eq!(body, line, "{path} {ty}");
        }
        let (_, body) = through("/fhir/metadata", response("application/fhir+json", None, line)).await;
        assert_eq!(body, b"{\"url\":\"http://h:1/p/x/fhir/x\"}\n");
    }
}
