//! The middleware that classifies each request, asks the fault engine, applies
//! the fault on the wire and records the exchange in the transcript.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulkmock_wire::IssueType;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::body::{CutAt, Unacted, corrupt, cut, drip, reset, stall};
use super::capability::{Issuer, cap_param, with_capabilities};
use super::engine::{Fired, RequestFacts};
use super::invariants::Deliberate;
use super::model::{ContentMutation, ExpiresIn, Fault, GzipMode, ManifestVariant, RangeMode, Target};
use super::profile::ProfilePrefix;
use super::shape::{first_line_of_sibling, respond, rewrite_body, rewrite_json, set_header};
use crate::app::AppState;
use crate::capture::BodyEnd;
use crate::transcript::{Exchange, RECORDED_HEADERS, fingerprint};

/// Largest token response body read for the transcript.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// The middleware.
pub async fn layer(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    // The proxy classifies its requests itself (from the URLs it has seen the upstream hand out).
    let mut facts = match parts.extensions.get::<Classified>() {
        Some(Classified(facts)) => facts.clone(),
        None => {
            let mut facts = classify(parts.method.as_str(), parts.uri.path());
            facts.client_id = bearer_client(&state, &parts.headers);
            job_facts(&state, parts.uri.path(), &mut facts);
            facts
        }
    };
    // A request that followed a redirect capability is not redirected again.
    facts.redirected =
        cap_param(parts.uri.query()).is_some_and(|c| state.capabilities.issuer(&c) == Some(Issuer::Redirect));
    // A token request's body says who is asking; read it (within its limit) and put it back.
    let is_token = facts.target == Some(Target::Token);
    let mut refused = None;
    let (body, assertion, form) = if is_token {
        let limit = state.config.limits.token_body_bytes;
        let bytes = match crate::limits::read_limited(&parts.headers, body, limit).await {
            Ok(bytes) => bytes,
            Err(crate::limits::BodyError::TooLarge) => {
                refused = Some(crate::limits::token_too_large(limit));
                Default::default()
            }
            Err(crate::limits::BodyError::Broken(_)) => Default::default(),
        };
        let assertion = decode_assertion(&bytes);
        if let Some(iss) = assertion.as_ref().and_then(|a| a["claims"]["iss"].as_str()) {
            facts.client_id = Some(iss.to_string());
        }
        let form = recorded_form(&bytes);
        (Body::from(bytes), assertion, Some(form))
    } else {
        (body, None, None)
    };
    let conn = parts.extensions.get::<axum::extract::ConnectInfo<crate::transport::Peer>>().map(|c| c.0.0.port());
    let connection = parts.extensions.get::<crate::transport::ConnectionSerial>().map(|c| c.0);
    let profile = parts.extensions.get::<super::profile::ProfileEngine>().map(|p| Arc::clone(&p.0));
    let fired = match refused {
        Some(_) => None,
        None => profile.and_then(|engine| engine.check(&facts)).or_else(|| check(&state, &facts)),
    };
    let mut exchange = Exchange {
        seq: 0,
        at_ms: state.transcript.now_ms(),
        unix_ms: unix_ms(),
        conn,
        connection,
        client_id: facts.client_id.clone(),
        target: facts.target,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: recorded_headers(&parts.headers),
        form,
        status: 0,
        response: Default::default(),
        bytes: 0,
        duration_ms: 0,
        fault: fired.as_ref().map(|f| f.label.clone()),
        assertion,
        issued: None,
        fault_not_applied: None,
        body_end: None,
    };
    let request = Request::from_parts(parts, body);
    let response = match (refused, fired) {
        (Some(refused), _) => refused,
        (None, Some(Fired { fault, count, .. })) => {
            let breaks = fault.breaks();
            let mut response = apply(&state, fault, count, request, next).await;
            if response.extensions().get::<NotApplied>().is_none() {
                Deliberate::mark(&mut response, breaks);
            }
            response
        }
        (None, None) => next.run(request).await,
    };
    if let Some(NotApplied(why)) = response.extensions().get::<NotApplied>().cloned() {
        exchange.fault_not_applied = exchange.fault.take().map(|label| format!("{label}: {why}"));
    }
    exchange.status = response.status().as_u16();
    exchange.response = recorded_response_headers(response.headers());
    // The length the connection will announce (`count_bytes` adds it when the body knows it).
    if let Some(len) = axum::body::HttpBody::size_hint(response.body()).exact() {
        exchange.response.entry("content-length".into()).or_insert_with(|| len.to_string());
    }
    let mut response = if is_token && response.status().is_success() {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_TOKEN_BODY).await.unwrap_or_default();
        exchange.issued = issued_token(&bytes);
        Response::from_parts(parts, Body::from(bytes))
    } else {
        response
    };
    exchange.duration_ms = started.elapsed().as_millis() as u64;
    let bytes = Arc::new(AtomicU64::new(0));
    let unacted = response.extensions().get::<Unacted>().map(|u| Arc::clone(&u.0));
    let seq = state.transcript.record_watched(exchange, Arc::clone(&bytes), unacted);
    response.extensions_mut().insert(crate::capture::ExchangeSeq(seq));
    count_bytes(response, bytes, Finished { state, seq, end: BodyEnd::Dropped })
}

/// A request already classified by an outer layer (the proxy's, which knows
/// the upstream's URLs from the answers it forwarded): [`layer`] takes these
/// facts instead of classifying the path as this server's own routes.
#[derive(Debug, Clone)]
pub struct Classified(pub RequestFacts);

/// Tells the transcript that an exchange's body is done, and how it ended, when dropped.
struct Finished {
    state: Arc<AppState>,
    seq: u64,
    end: BodyEnd,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.state.transcript.finish_with(self.seq, self.end);
    }
}

/// The client's own rules first (a registration's fault profile), then the server's.
pub fn check(state: &AppState, facts: &RequestFacts) -> Option<Fired> {
    let client_engine = facts
        .client_id
        .as_deref()
        .and_then(|id| state.auth.as_ref()?.registry.get(id))
        .and_then(|client| client.faults.clone());
    client_engine.and_then(|engine| engine.check(facts)).or_else(|| state.faults.check(facts))
}

/// The level and age of the job a request belongs to, or the level of a kick-off.
fn job_facts(state: &AppState, path: &str, facts: &mut RequestFacts) {
    let segments: Vec<&str> = path.trim_start_matches("/fhir/").split('/').collect();
    let level = |l: &crate::export::plan::Level| match l {
        crate::export::plan::Level::System => "system",
        crate::export::plan::Level::Patient => "patient",
        crate::export::plan::Level::Group(_) => "group",
    };
    match segments.as_slice() {
        ["$export"] => facts.level = Some("system".into()),
        ["Patient", "$export"] => facts.level = Some("patient".into()),
        ["Group", _, "$export"] => facts.level = Some("group".into()),
        ["bulkstatus" | "bulkfiles", id, ..] => {
            if let Ok(job) = state.jobs.get(id) {
                facts.level = Some(level(&job.plan.level).into());
                facts.job_age_s = Some(job.age().as_secs_f64());
            }
        }
        _ => {}
    }
}

/// Which target (and file facts) a request is.
fn classify(method: &str, path: &str) -> RequestFacts {
    let mut facts = RequestFacts::default();
    let Some(rest) = path.strip_prefix("/fhir/") else {
        if path == "/auth/token" && method == "POST" {
            facts.target = Some(Target::Token);
        }
        return facts;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    facts.target = match (method, segments.as_slice()) {
        (_, ["metadata"]) | (_, [".well-known", "smart-configuration"]) => Some(Target::Metadata),
        (_, ["$export"]) | (_, ["Patient", "$export"]) | (_, ["Group", _, "$export"]) => Some(Target::Kickoff),
        ("DELETE", ["bulkstatus", _]) => Some(Target::Delete),
        (_, ["bulkstatus", ..]) => Some(Target::Status),
        (_, ["bulkfiles", _, name]) => {
            let mut parts = name.split('.');
            facts.file_index = parts.next().and_then(|n| n.parse().ok());
            let rest: Vec<&str> = parts.collect();
            facts.resource_type = match rest.as_slice() {
                ["deleted", ty, "ndjson"] | [ty, "ndjson"] if *ty != "patients" => Some(ty.to_string()),
                _ if *name == "error.ndjson" => Some("OperationOutcome".into()),
                _ => None,
            };
            Some(Target::File)
        }
        (_, ["attachments", _]) => Some(Target::Attachment),
        _ => None,
    };
    facts
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (_, token) = value.split_once(' ')?;
    Some(token.trim().to_string())
}

fn bearer_client(state: &AppState, headers: &HeaderMap) -> Option<String> {
    state.auth.as_ref()?.token(&bearer_token(headers)?).ok().map(|t| t.client_id)
}

fn recorded_headers(headers: &HeaderMap) -> std::collections::BTreeMap<String, String> {
    RECORDED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            let value = if *name == "authorization" {
                match value.split_once(' ') {
                    Some((scheme, secret)) => format!("{scheme} <{}>", fingerprint(secret.trim())),
                    None => format!("<{}>", fingerprint(value)),
                }
            } else {
                value.to_string()
            };
            Some((name.to_string(), value))
        })
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn recorded_response_headers(headers: &HeaderMap) -> std::collections::BTreeMap<String, String> {
    crate::transcript::RECORDED_RESPONSE_HEADERS
        .iter()
        .filter_map(|name| Some((name.to_string(), headers.get(*name)?.to_str().ok()?.to_string())))
        .collect()
}

/// A token request's form fields, the assertion itself left out (CLI-024).
fn recorded_form(body: &[u8]) -> std::collections::BTreeMap<String, String> {
    form_urlencoded::parse(body)
        .filter(|(k, _)| k != "client_assertion")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The fingerprint and `expires_in` of an issued token, from the response body as sent.
fn issued_token(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let token = v["access_token"].as_str()?;
    Some(json!({"fingerprint": fingerprint(token), "expires_in": v["expires_in"].clone()}))
}

/// The unverified header and claims of a token request's assertion.
fn decode_assertion(body: &[u8]) -> Option<Value> {
    let assertion = form_urlencoded::parse(body).find(|(k, _)| k == "client_assertion").map(|(_, v)| v.into_owned())?;
    let mut parts = assertion.split('.');
    let mut part = || -> Option<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(parts.next()?.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let header = part()?;
    let claims = part()?;
    Some(json!({"header": header, "claims": claims, "fingerprint": fingerprint(&assertion)}))
}

/// Token-endpoint faults the token handler must apply itself.
#[derive(Debug, Clone, Default)]
pub struct TokenFaults {
    /// Issue tokens with this lifetime (`token_lifetime`).
    pub lifetime: Option<Duration>,
    /// Grant at most these scopes (`narrow_scope`).
    pub scope_limit: Option<String>,
    /// Check assertion times as if the clock were off by this many seconds (`clock_skew`).
    pub skew_s: i64,
}

async fn apply(state: &AppState, fault: Fault, count: u64, mut request: Request, next: Next) -> Response {
    match fault {
        Fault::Respond { status, body, code, message, retry_after_s, retry_after_date_s } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = respond(status, body, code.as_deref(), message.as_deref());
            let h = response.headers_mut();
            if let Some(s) = retry_after_s {
                h.insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            if let Some(s) = retry_after_date_s {
                let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(s));
                h.insert(header::RETRY_AFTER, HeaderValue::from_str(&date).expect("ASCII"));
            }
            response
        }
        Fault::Delay { delay_ms } => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            next.run(request).await
        }
        Fault::Truncate { after_bytes, fraction, at_line_end } => {
            if at_line_end {
                request.headers_mut().remove(header::ACCEPT_ENCODING);
            }
            let response = next.run(request).await;
            if at_line_end && let Some(why) = no_lines(&response) {
                return not_applied(response, why);
            }
            let offset = match after_bytes {
                Some(n) => Ok(n),
                None => share_of_body(&response, fraction.unwrap_or(0.5), "truncate"),
            };
            match offset.and_then(|n| beyond_body(&response, n, "truncate").map_or(Ok(n), Err)) {
                Err(why) => not_applied(response, why),
                Ok(n) if at_line_end => cut(response, CutAt::LineEndFrom(n)),
                Ok(n) => cut(response, CutAt::Byte(n)),
            }
        }
        Fault::InProgress { retry_after_s, progress } => {
            let mut response = StatusCode::ACCEPTED.into_response();
            let h = response.headers_mut();
            let text = progress.unwrap_or_else(|| "in progress".to_string());
            if let Ok(v) = HeaderValue::from_str(&text) {
                h.insert("x-progress", v);
            }
            if let Some(s) = retry_after_s {
                h.insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            // In separate-export-status mode the job's state travels in X-Export-Status (SRV-044).
            let id = request.uri().path().split('/').nth(3).unwrap_or_default();
            match state.jobs.get(id) {
                Ok(job) => crate::routes::status::job_state_response(&job, StatusCode::ACCEPTED, response),
                Err(_) => response,
            }
        }
        Fault::Vanish if state.proxy.is_some() => {
            let proxy = state.proxy.as_ref().expect("proxy");
            proxy.vanish(request.uri().path());
            crate::error::FhirError::not_found("there is no such export job (vanished: injected fault)").into_response()
        }
        Fault::Vanish => {
            let id = request.uri().path().split('/').nth(3).unwrap_or_default().to_string();
            state.jobs.forget(&id);
            crate::error::FhirError::not_found(format!("there is no export job {id}")).into_response()
        }
        Fault::ExpireUrls => {
            let id = request.uri().path().split('/').nth(3).unwrap_or_default();
            if let Ok(job) = state.jobs.get(id) {
                job.expire_urls();
            }
            crate::routes::files::expired_url().into_response()
        }
        Fault::Revoke => {
            if let (Some(auth), Some(token)) = (&state.auth, bearer_token(request.headers())) {
                auth.revoke(&token);
            }
            if let (Some(proxy), Some(token)) = (&state.proxy, bearer_token(request.headers())) {
                proxy.faults.revoke(&token);
            }
            next.run(request).await
        }
        Fault::Manifest { variant } => {
            let job = request.uri().path().split('/').nth(3).and_then(|id| state.jobs.get(id).ok());
            let response = next.run(request).await;
            if variant == ManifestVariant::PartialSuccess {
                let Some(job) = job else { return response };
                job.inject_partial_failure();
                let url = crate::export::manifest::JobUrls { fhir_base: &state.fhir_base, job: &job.id }
                    .file_in(crate::export::manifest::ERROR_FILE, job.url_generation());
                let count = job.plan.notes.len() as u64 + 1;
                return rewrite_json(response, move |v| {
                    v["error"] = json!([{"type": "OperationOutcome", "url": url, "count": count}]);
                })
                .await;
            }
            rewrite_json(response, |v| super::rewrite::manifest(v, variant)).await
        }
        Fault::Content { mutation, line } => {
            for h in [header::ACCEPT_ENCODING, header::RANGE, header::IF_RANGE] {
                request.headers_mut().remove(h);
            }
            let foreign = if mutation == ContentMutation::DuplicateAcrossFiles {
                first_line_of_sibling(state, request.uri().path())
            } else {
                None
            };
            let response = next.run(request).await;
            rewrite_body(response, |body| match foreign {
                Some(mut extra) => {
                    let mut body = body;
                    extra.push(b'\n');
                    body.extend(extra);
                    body
                }
                None => super::rewrite::content(body, mutation, line),
            })
            .await
        }
        Fault::CapabilityUrls { ttl_s } => {
            let response = next.run(request).await;
            let ttl = Duration::from_secs(ttl_s);
            rewrite_json(response, |v| with_capabilities(v, |job| state.capabilities.issue(job, ttl, Issuer::Manifest)))
                .await
        }
        Fault::Gzip { mode } => {
            request.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            request.headers_mut().remove(header::RANGE);
            let response = next.run(request).await;
            if let Some(why) = not_gzip(&response) {
                return not_applied(response, why);
            }
            match mode {
                GzipMode::NoHeader => {
                    let (mut parts, body) = response.into_parts();
                    parts.headers.remove(header::CONTENT_ENCODING);
                    Response::from_parts(parts, body)
                }
                GzipMode::Corrupt => corrupt(response),
            }
        }
        Fault::Range { mode } => {
            let had_range = request.headers_mut().remove(header::RANGE).is_some();
            request.headers_mut().remove(header::IF_RANGE);
            let response = next.run(request).await;
            if mode == RangeMode::Unsatisfiable && had_range && response.status() == StatusCode::OK {
                let len = response.headers().get(header::CONTENT_LENGTH).cloned();
                let mut refused = crate::error::FhirError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    IssueType::Invalid,
                    "this server refuses byte ranges (injected fault)",
                )
                .into_response();
                if let Some(len) =
                    len.and_then(|l| HeaderValue::from_str(&format!("bytes */{}", l.to_str().unwrap_or("0"))).ok())
                {
                    refused.headers_mut().insert(header::CONTENT_RANGE, len);
                }
                return refused;
            }
            response
        }
        Fault::Redirect { host, capability, ttl_s } => {
            let origin = state.origin();
            let (scheme, rest) = origin.split_once("://").unwrap_or(("http", origin));
            let port = rest.rsplit_once(':').map(|(_, p)| p).unwrap_or("80");
            let host = host
                .unwrap_or_else(|| if rest.starts_with("localhost") { "127.0.0.1".into() } else { "localhost".into() });
            // Through a profile base the target keeps the profile prefix.
            let prefix = request.extensions().get::<ProfilePrefix>().map(|p| format!("/{}", p.0)).unwrap_or_default();
            let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut location = format!("{scheme}://{host}:{port}{prefix}{path}");
            if let (true, Some(proxy)) = (capability, &state.proxy) {
                // The proxy cannot tell who may read the upstream's URL: the
                // capability carries the caller's credentials to the upstream.
                let cap = state.capabilities.issue(request.uri().path(), Duration::from_secs(ttl_s), Issuer::Redirect);
                proxy.faults.remember_credentials(&cap, request.headers().get(header::AUTHORIZATION));
                let sep = if location.contains('?') { '&' } else { '?' };
                location = format!("{location}{sep}cap={cap}");
            } else if capability {
                // Like presigned storage URLs: the target works without the token
                // (CLI-031). Handed out only to a caller who may read the original.
                let scope = capability_scope(request.uri().path());
                if let Err(refused) = may_read(state, &request, &scope) {
                    return refused.into_response();
                }
                let cap = state.capabilities.issue(&scope, Duration::from_secs(ttl_s), Issuer::Redirect);
                let sep = if location.contains('?') { '&' } else { '?' };
                location = format!("{location}{sep}cap={cap}");
            }
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response()
        }
        Fault::TokenLifetime { lifetime_s } => {
            let faults = TokenFaults { lifetime: Some(Duration::from_secs(lifetime_s)), ..TokenFaults::default() };
            request.extensions_mut().insert(faults);
            next.run(request).await
        }
        Fault::NarrowScope { scope } => {
            request.extensions_mut().insert(TokenFaults { scope_limit: Some(scope), ..TokenFaults::default() });
            next.run(request).await
        }
        Fault::ClockSkew { skew_s } => {
            request.extensions_mut().insert(TokenFaults { skew_s, ..TokenFaults::default() });
            next.run(request).await
        }
        Fault::Stall { after_bytes, fraction, stall_ms } => {
            let response = next.run(request).await;
            let offset = match fraction {
                Some(f) => share_of_body(&response, f, "stall"),
                None => Ok(after_bytes),
            };
            match offset.and_then(|n| beyond_body(&response, n, "stall").map_or(Ok(n), Err)) {
                Err(why) => not_applied(response, why),
                Ok(n) => stall(response, n, stall_ms),
            }
        }
        Fault::Reset { after_bytes, fraction } => {
            let peer = request.extensions().get::<axum::extract::ConnectInfo<crate::transport::Peer>>().map(|c| c.0.0);
            let response = next.run(request).await;
            let offset = match fraction {
                // At least one byte: 0 would mean before the headers.
                Some(f) => share_of_body(&response, f, "reset").map(|n| n.max(1)),
                None => Ok(after_bytes),
            };
            let offset = offset.and_then(|n| match beyond_body(&response, n, "reset") {
                Some(why) if n > 0 => Err(why),
                _ => Ok(n),
            });
            match offset {
                Err(why) => not_applied(response, why),
                Ok(n) => reset(state, response, peer, n),
            }
        }
        // Only valid for `jwks` (checked at the edge), where the JWKS fetch applies them.
        Fault::Unreachable | Fault::Rotated => StatusCode::BAD_GATEWAY.into_response(),
        Fault::RelativeEndpoints => {
            let response = next.run(request).await;
            rewrite_json(response, relative_endpoints).await
        }
        Fault::TokenResponse { token_type, expires_in } => {
            let response = next.run(request).await;
            rewrite_json(response, |v| {
                if let Some(t) = &token_type {
                    v["token_type"] = json!(t);
                }
                match expires_in {
                    ExpiresIn::Unchanged => {}
                    ExpiresIn::Missing => {
                        v.as_object_mut().map(|o| o.remove("expires_in"));
                    }
                    ExpiresIn::String => v["expires_in"] = json!(v["expires_in"].to_string()),
                }
            })
            .await
        }
        Fault::Drip { bytes_per_s } => drip(next.run(request).await, bytes_per_s),
        Fault::Header { name, value } => {
            let mut response = next.run(request).await;
            set_header(state, &mut response, &name, &value.replace("{n}", &count.to_string()));
            response
        }
    }
}

/// Marks a response a fault matched but could not act on: the transcript
/// records the rule as not applied instead of fired.
#[derive(Debug, Clone)]
pub(crate) struct NotApplied(pub String);

/// The response, untouched, marked [`NotApplied`] with `why`.
pub(crate) fn not_applied(mut response: Response, why: String) -> Response {
    response.extensions_mut().insert(NotApplied(why));
    response
}

/// Why a cut at a line end cannot act on `response`: not a 200, or an encoded
/// body (whose bytes are no lines). `None` when it can.
fn no_lines(response: &Response) -> Option<String> {
    if response.status() != StatusCode::OK {
        let status = response.status().as_u16();
        return Some(format!("truncate at a line end acts on a 200 body, not on this {status}: sent untouched"));
    }
    let encoding = response.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    (!encoding.eq_ignore_ascii_case("identity"))
        .then(|| format!("truncate at a line end needs an unencoded body, this one is {encoding}: sent untouched"))
}

/// Why a `gzip` fault cannot act on `response`: its body is not gzip-encoded
/// (an error answer, or an upstream that ignored `Accept-Encoding`).
fn not_gzip(response: &Response) -> Option<String> {
    let encoding = response.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let gzip = encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip");
    (!gzip).then(|| {
        let status = response.status().as_u16();
        format!("gzip needs a gzip-encoded body, this {status} answer is {encoding}: sent untouched")
    })
}

/// The length of a response's (encoded) body, when it is known before sending.
fn body_len(response: &Response) -> Option<u64> {
    let declared = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    declared.or_else(|| axum::body::HttpBody::size_hint(response.body()).exact())
}

/// The byte offset at `fraction` of the (encoded) body, or why there is none
/// (a body whose length is not known before it is sent).
fn share_of_body(response: &Response, fraction: f64, kind: &str) -> Result<u64, String> {
    body_len(response).map(|len| (len as f64 * fraction) as u64).ok_or_else(|| {
        format!(
            "{kind} at a fraction needs a body of known length (a Content-Length), this one is chunked: sent untouched"
        )
    })
}

/// Why a fault at byte `offset` cannot act on `response`: its (encoded) body
/// ends at or before the offset. `None` when it can, or the length is unknown.
fn beyond_body(response: &Response, offset: u64, kind: &str) -> Option<String> {
    let len = body_len(response)?;
    let encoding = response.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    (offset >= len)
        .then(|| format!("{kind} after {offset} bytes cannot act on a {len}-byte body ({encoding}): sent untouched"))
}

/// The endpoints of a discovery document (`*_endpoint`) or of a
/// CapabilityStatement's `oauth-uris` extension as paths on the origin:
/// `http://host:port/p/x/auth/token` -> `/p/x/auth/token`. The fault acts on
/// both metadata routes, whichever a client reads.
fn relative_endpoints(v: &mut Value) {
    let relative = |value: &mut Value| {
        if let Some(rest) = value.as_str().and_then(|url| url.split_once("://")).map(|(_, r)| r.to_string())
            && let Some(slash) = rest.find('/')
        {
            *value = json!(rest[slash..].to_string());
        }
    };
    for (key, value) in v.as_object_mut().into_iter().flatten() {
        if key.ends_with("_endpoint") {
            relative(value);
        }
    }
    let oauth_uris = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
    // `get_mut`, never indexing: indexing a missing member would insert `null`.
    fn array(value: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
        value.and_then(Value::as_array_mut).into_iter().flatten()
    }
    for rest in array(v.get_mut("rest")) {
        for ext in array(rest.get_mut("security").and_then(|s| s.get_mut("extension"))) {
            if ext.get("url").and_then(Value::as_str) != Some(oauth_uris) {
                continue;
            }
            for uri in array(ext.get_mut("extension")) {
                if let Some(value) = uri.get_mut("valueUri") {
                    relative(value);
                }
            }
        }
    }
}

/// Whether the caller may read what `scope` names (a valid capability in the
/// query, or a token that may see the job or attachments), else the route's answer.
fn may_read(state: &AppState, request: &Request, scope: &str) -> Result<(), crate::error::FhirError> {
    if state.capabilities.open(request.uri().query(), scope)? {
        return Ok(());
    }
    match scope.strip_prefix("attachments/") {
        Some(_) => crate::auth::guard::caller(state, request.headers()).map(drop),
        None => crate::routes::status::job_for_caller(state, scope, request.headers()).map(drop),
    }
}

/// What a redirect capability opens: the job of a status or file path, or one attachment.
fn capability_scope(path: &str) -> String {
    match path.trim_start_matches("/fhir/").split('/').collect::<Vec<_>>().as_slice() {
        ["attachments", id] => format!("attachments/{id}"),
        [_, job, ..] => job.to_string(),
        _ => String::new(),
    }
}

/// Counts body bytes as they are handed to the connection, and tells the
/// transcript how the body ended: at its end (`complete`; also when hyper stops
/// polling once the announced length went out), with an error (`failed`), or
/// dropped before its end (`dropped`).
fn count_bytes(response: Response, counter: Arc<AtomicU64>, finished: Finished) -> Response {
    let (mut parts, body) = response.into_parts();
    let exact = axum::body::HttpBody::size_hint(&body).exact();
    if let Some(len) = exact
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let announced = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let counted = Counted { inner: body.into_data_stream(), counter, sent: 0, announced, finished: Some(finished) };
    Response::from_parts(parts, Body::from_stream(counted))
}

/// A body stream that counts its bytes and finishes its exchange when it ends or drops.
struct Counted {
    inner: axum::body::BodyDataStream,
    counter: Arc<AtomicU64>,
    sent: u64,
    announced: Option<u64>,
    finished: Option<Finished>,
}

impl Counted {
    fn end(&mut self, end: BodyEnd) {
        if let Some(mut finished) = self.finished.take() {
            finished.end = end;
        }
    }
}

impl futures_util::Stream for Counted {
    type Item = Result<axum::body::Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(bytes))) => {
                let len = bytes.len() as u64;
                self.sent += len;
                self.counter.fetch_add(len, Ordering::Relaxed);
            }
            std::task::Poll::Ready(Some(Err(_))) => self.end(BodyEnd::Failed),
            std::task::Poll::Ready(None) => self.end(BodyEnd::Complete),
            std::task::Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // hyper may stop polling once the announced length went out.
        let whole = self.announced == Some(self.sent);
        self.end(if whole { BodyEnd::Complete } else { BodyEnd::Dropped });
    }
}
