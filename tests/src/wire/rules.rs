//! The rules per route, each citing where the specification states it.

use bulkmock_server::capture::{BodyEnd, CapturedResponse};
use bulkmock_server::faults::invariants::Invariant;
use serde_json::Value;

use super::body::{decoded, ndjson_types};
use super::json::{essence, first_null, is_absolute_url, is_instant, is_retry_after};
use super::{Listed, Observation, Route, Served, Violation, at, path_of};

/// RFC 6749 §5.2 error codes.
const OAUTH_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

/// The OperationOutcome issue severities (FHIR R4 issue-severity).
const SEVERITIES: &[&str] = &["fatal", "error", "warning", "information"];

/// Learns the URLs a response names: status URLs, file URLs, the token endpoint.
pub fn learn(seen: &mut Observation, response: &CapturedResponse) {
    let path = response.path.as_str();
    if path.ends_with("/$export") && response.status == 202 {
        if let Some(location) = response.header("content-location") {
            seen.status_paths.insert(path_of(location));
        }
        return;
    }
    let Some(json) = json_body(response) else { return };
    if seen.status_paths.contains(path) && json.get("output").is_some() {
        let organised = json.get("outputOrganizedBy").is_some();
        for member in ["output", "error", "deleted"] {
            for item in json.get(member).and_then(Value::as_array).into_iter().flatten() {
                let Some(url) = item.get("url").and_then(Value::as_str) else { continue };
                seen.files.entry(path_of(url)).or_default().push(Listed {
                    member,
                    kind: item.get("type").and_then(Value::as_str).map(str::to_string),
                    count: item.get("count").and_then(Value::as_u64),
                    sha256: item
                        .get("extension")
                        .and_then(|e| e.get(bulkmock_wire_sha256()))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    organised,
                    deliberate: response.deliberate.clone(),
                    at: at(response),
                });
            }
        }
        for link in json.get("link").and_then(Value::as_array).into_iter().flatten() {
            if let Some(url) = link.get("url").and_then(Value::as_str) {
                seen.status_paths.insert(path_of(url));
            }
        }
    } else if path.ends_with("/.well-known/smart-configuration")
        && let Some(token) = json.get("token_endpoint").and_then(Value::as_str)
    {
        seen.token_paths.insert(path_of(token));
    }
}

/// The key of bulkmock's SHA-256 file extension, as `docs/` documents it.
fn bulkmock_wire_sha256() -> &'static str {
    "https://bulkmock.dev/fhir/StructureDefinition/sha256"
}

/// The body as JSON, when it went out whole and decodes as JSON.
fn json_body(response: &CapturedResponse) -> Option<Value> {
    if !response.whole() {
        return None;
    }
    let bytes = decoded(&response.body, response.header("content-encoding")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Checks one response against the rules of its route.
pub fn check(seen: &mut Observation, route: Route, response: &CapturedResponse) {
    length(seen, response);
    let Some(bytes) = body(seen, response) else { return };
    let status = response.status;
    match route {
        Route::Kickoff => match status {
            // SRV-110: 202 with the absolute status URL in Content-Location.
            202 => match response.header("content-location") {
                Some(url) if !is_absolute_url(url) => seen.fail(
                    response,
                    Invariant::AbsoluteUrls,
                    format!("Content-Location {url:?} is not absolute (SRV-110)"),
                ),
                Some(_) => {}
                None => seen.fail(response, Invariant::Headers, "a 202 kick-off has no Content-Location (SRV-110)"),
            },
            400.. => outcome(seen, response, &bytes),
            s => seen.fail(
                response,
                Invariant::Status,
                format!("a kick-off answers 202 or 4xx/5xx, not {s} (SRV-110, SRV-113)"),
            ),
        },
        Route::Status => {
            // SRV-044: in separate-export-status mode the job's status is in X-Export-Status.
            let job_status = match (status, response.header("x-export-status").and_then(|s| s.trim().parse().ok())) {
                (200, Some(inner)) => inner,
                _ => status,
            };
            match job_status {
                202 => {
                    retry_after(seen, response);
                    if essence(response.header("content-type")) == "application/json" && !bytes.is_empty() {
                        manifest(seen, response, &bytes); // a partial manifest (SRV-125)
                    }
                }
                200 => {
                    if essence(response.header("content-type")) != "application/json" {
                        let got = response.header("content-type").unwrap_or("none");
                        seen.fail(
                            response,
                            Invariant::Headers,
                            format!("a manifest is sent as application/json, not {got} (SRV-133)"),
                        );
                    }
                    manifest(seen, response, &bytes);
                }
                400.. => {
                    retry_after(seen, response);
                    outcome(seen, response, &bytes);
                }
                s => seen.fail(
                    response,
                    Invariant::Status,
                    format!("a status poll answers 202, 200 or 4xx/5xx, not {s} (SRV-123, SRV-128, SRV-133)"),
                ),
            }
        }
        Route::Delete => match status {
            202 => {}
            400.. => outcome(seen, response, &bytes),
            s => seen.fail(
                response,
                Invariant::Status,
                format!("a DELETE answers 202 or 4xx/5xx, not {s} (SRV-142, SRV-143)"),
            ),
        },
        Route::File => file(seen, response, &bytes),
        Route::Token => token(seen, response, &bytes),
        Route::Discovery => match status {
            200 => discovery(seen, response, &bytes),
            400.. => {}
            s => seen.fail(response, Invariant::Status, format!("discovery answers 200, not {s} (AUTH-001)")),
        },
        Route::Metadata => match status {
            200 => match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) if v.get("resourceType").and_then(Value::as_str) == Some("CapabilityStatement") => {}
                _ => {
                    seen.fail(response, Invariant::Status, "/metadata does not answer a CapabilityStatement (SRV-206)")
                }
            },
            400.. => outcome(seen, response, &bytes),
            s => seen.fail(response, Invariant::Status, format!("/metadata answers 200, not {s}")),
        },
        Route::Fhir => {
            if status >= 400 {
                outcome(seen, response, &bytes);
            }
        }
        Route::Other => {}
    }
}

/// `Content-Length` equals the bytes sent, and the server's body did not fail.
fn length(seen: &mut Observation, response: &CapturedResponse) {
    let announced = response.announced_length.map_or_else(|| "no length".to_string(), |n| format!("{n} announced"));
    match response.end {
        BodyEnd::Failed => seen.fail(
            response,
            Invariant::Length,
            format!("the body stopped after {} bytes ({announced}): the server cut it", response.sent),
        ),
        BodyEnd::Complete if response.announced_length.is_some_and(|n| n != response.sent) => {
            seen.fail(response, Invariant::Length, format!("{} body bytes sent, {announced}", response.sent))
        }
        // Dropped: the client went away (or a reset fault cut the connection); not the server's doing.
        _ => {}
    }
}

/// The decoded body of a response sent whole, or `None` (nothing more to judge).
fn body(seen: &mut Observation, response: &CapturedResponse) -> Option<Vec<u8>> {
    if !response.whole() {
        return None;
    }
    match decoded(&response.body, response.header("content-encoding")) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            seen.fail(response, Invariant::Gzip, format!("{e} (SRV-186)"));
            None
        }
    }
}

/// `Retry-After`, when present, is delay-seconds or an HTTP-date (SRV-120, RFC 9110 §10.2.3).
fn retry_after(seen: &mut Observation, response: &CapturedResponse) {
    if let Some(v) = response.header("retry-after").filter(|v| !is_retry_after(v)) {
        seen.fail(
            response,
            Invariant::Headers,
            format!("Retry-After {v:?} is neither delay-seconds nor an HTTP-date (SRV-120)"),
        );
    }
}

/// An error on a FHIR route: an OperationOutcome as `application/fhir+json`
/// (SRV-113, SRV-129, SRV-130, SRV-143; `application/json` when the client asked for it).
fn outcome(seen: &mut Observation, response: &CapturedResponse, bytes: &[u8]) {
    let media = essence(response.header("content-type"));
    if media != "application/fhir+json" && media != "application/json" {
        seen.fail(
            response,
            Invariant::Outcome,
            format!("an error is sent as {media:?}, not an OperationOutcome in application/fhir+json (SRV-130)"),
        );
        return;
    }
    let problem = match serde_json::from_slice::<Value>(bytes) {
        Err(e) => Some(format!("the error body is not JSON: {e}")),
        Ok(v) => outcome_problem(&v),
    };
    if let Some(problem) = problem {
        seen.fail(response, Invariant::Outcome, format!("{problem} (SRV-113)"));
    }
}

/// What is wrong with an OperationOutcome, if anything.
fn outcome_problem(v: &Value) -> Option<String> {
    if v.get("resourceType").and_then(Value::as_str) != Some("OperationOutcome") {
        return Some("the error body is not an OperationOutcome".into());
    }
    if let Some(path) = first_null(v, "$") {
        return Some(format!("the OperationOutcome has null at {path}"));
    }
    let issues = v.get("issue").and_then(Value::as_array).filter(|i| !i.is_empty());
    let Some(issues) = issues else { return Some("the OperationOutcome has no issue".into()) };
    issues.iter().enumerate().find_map(|(i, issue)| {
        let severity = issue.get("severity").and_then(Value::as_str);
        let code = issue.get("code").and_then(Value::as_str).filter(|c| !c.is_empty());
        match (severity, code) {
            (Some(s), Some(_)) if SEVERITIES.contains(&s) => None,
            _ => Some(format!("issue[{i}] lacks a valid severity or code")),
        }
    })
}

/// A manifest: members, JSON types, absolute URLs, no null (SRV-151..SRV-165).
fn manifest(seen: &mut Observation, response: &CapturedResponse, bytes: &[u8]) {
    let v = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => v,
        Err(e) => return seen.fail(response, Invariant::Manifest, format!("the manifest is not JSON: {e}")),
    };
    let mut problems = Vec::new();
    if let Some(path) = first_null(&v, "$") {
        problems.push(format!("null at {path} (FHIR JSON has no null)"));
    }
    if !v.get("transactionTime").and_then(Value::as_str).is_some_and(is_instant) {
        problems.push("transactionTime is not an instant (SRV-151)".into());
    }
    if !v.get("request").is_some_and(Value::is_string) {
        problems.push("request is not a string (SRV-152)".into());
    }
    if !v.get("requiresAccessToken").is_some_and(Value::is_boolean) {
        problems.push("requiresAccessToken is not a boolean (SRV-153)".into());
    }
    let organised = v.get("outputOrganizedBy").is_some();
    for (member, required, kind) in
        [("output", true, None), ("error", true, Some("OperationOutcome")), ("deleted", false, Some("Bundle"))]
    {
        match v.get(member) {
            None if !required => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    problems.extend(entry_problem(
                        seen,
                        response,
                        item,
                        &format!("{member}[{i}]"),
                        kind,
                        organised && member == "output",
                    ));
                }
            }
            _ => problems.push(format!("{member} is not an array (SRV-156, SRV-162, SRV-165)")),
        }
    }
    if let Some(links) = v.get("link") {
        let ok = links.as_array().is_some_and(|l| {
            l.iter().all(|link| {
                link.get("relation").is_some_and(Value::is_string) && link.get("url").is_some_and(Value::is_string)
            })
        });
        if !ok {
            problems.push("link is not an array of {relation, url} (SRV-163)".into());
        }
        for url in links.as_array().into_iter().flatten().filter_map(|l| l.get("url")?.as_str()) {
            if !is_absolute_url(url) {
                seen.fail(response, Invariant::AbsoluteUrls, format!("link url {url:?} is not absolute (SRV-163)"));
            }
        }
    }
    if v.get("extension").is_some_and(|e| !e.is_object()) {
        problems.push("extension is not an object (SRV-164)".into());
    }
    for problem in problems {
        seen.fail(response, Invariant::Manifest, problem);
    }
}

/// What is wrong with one manifest entry (`url` absolute is its own invariant).
fn entry_problem(
    seen: &mut Observation,
    response: &CapturedResponse,
    item: &Value,
    at: &str,
    kind: Option<&str>,
    organised: bool,
) -> Option<String> {
    let Some(url) = item.get("url").and_then(Value::as_str) else {
        return Some(format!("{at}.url is not a string (SRV-157)"));
    };
    if !is_absolute_url(url) {
        seen.fail(response, Invariant::AbsoluteUrls, format!("{at}.url {url:?} is not absolute (SRV-159)"));
    }
    match (item.get("type"), kind) {
        // SRV-157: v3 items carry no `type` when output is organised.
        (Some(_), _) if organised => return Some(format!("{at} carries a type in organised output (SRV-157)")),
        (None, _) if organised => {}
        (Some(Value::String(t)), Some(k)) if t != k => {
            return Some(format!("{at}.type is {t}, not {k} (SRV-162, SRV-174)"));
        }
        (Some(Value::String(_)), _) => {}
        _ => return Some(format!("{at}.type is not a string (SRV-157)")),
    }
    if item.get("count").is_some_and(|c| c.as_u64().is_none()) {
        return Some(format!("{at}.count is not a non-negative integer (SRV-160)"));
    }
    None
}

/// A file: 200 with `application/fhir+ndjson` and NDJSON (SRV-184, SRV-194), 206 with Content-Range.
fn file(seen: &mut Observation, response: &CapturedResponse, bytes: &[u8]) {
    match response.status {
        200 => {
            let media = essence(response.header("content-type"));
            if media != "application/fhir+ndjson" {
                seen.fail(
                    response,
                    Invariant::Headers,
                    format!("a file is sent as {media:?}, not application/fhir+ndjson (SRV-184)"),
                );
            }
            match ndjson_types(bytes) {
                Ok(types) => {
                    let sha256 = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
                    let served = Served { at: at(response), types, sha256, deliberate: response.deliberate.clone() };
                    seen.served.entry(response.path.clone()).or_default().push(served);
                }
                Err(e) => seen.fail(response, Invariant::Ndjson, format!("{e} (SRV-194)")),
            }
        }
        206 => {
            if response.header("content-range").is_none() {
                seen.fail(response, Invariant::Headers, "a 206 has no Content-Range (RFC 9110 §15.3.7)");
            }
        }
        301 | 302 | 303 | 307 | 308 => {
            if response.header("location").is_none() {
                seen.fail(response, Invariant::Headers, "a redirect has no Location (RFC 9110 §15.4)");
            }
        }
        400.. => {} // SRV-185: 4xx/5xx; no body format is required of file errors.
        s => seen.fail(
            response,
            Invariant::Status,
            format!("a file answers 200, 206, a redirect or 4xx/5xx, not {s} (SRV-184, SRV-185)"),
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token endpoint: RFC 6749 §5.1/§5.2 and SMART Backend Services (AUTH-042, AUTH-050, AUTH-054).
fn token(seen: &mut Observation, response: &CapturedResponse, bytes: &[u8]) {
    let status = response.status;
    if !matches!(status, 200 | 400 | 401) {
        return seen.fail(
            response,
            Invariant::Status,
            format!("a token request answers 200, 400 or 401, not {status} (AUTH-042)"),
        );
    }
    if essence(response.header("content-type")) != "application/json" {
        seen.fail(response, Invariant::Token, "a token response is not application/json (RFC 6749 §5.1)");
    }
    let v = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => v,
        Err(e) => return seen.fail(response, Invariant::Token, format!("the token response is not JSON: {e}")),
    };
    if let Some(path) = first_null(&v, "$") {
        seen.fail(response, Invariant::Token, format!("null at {path}"));
    }
    if status == 200 {
        if !response.header("cache-control").is_some_and(|c| c.to_ascii_lowercase().contains("no-store")) {
            seen.fail(response, Invariant::Headers, "a token response lacks Cache-Control: no-store (AUTH-054)");
        }
        if !response.header("pragma").is_some_and(|c| c.eq_ignore_ascii_case("no-cache")) {
            seen.fail(response, Invariant::Headers, "a token response lacks Pragma: no-cache (AUTH-054)");
        }
        let str_member = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if str_member("access_token").is_none() {
            seen.fail(response, Invariant::Token, "no access_token (AUTH-050)");
        }
        if !str_member("token_type").is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
            seen.fail(response, Invariant::Token, "token_type is not bearer (AUTH-050)");
        }
        if v.get("expires_in").and_then(Value::as_u64).is_none_or(|s| s == 0) {
            seen.fail(response, Invariant::Token, "expires_in is not a positive integer (AUTH-050)");
        }
        if str_member("scope").is_none() {
            seen.fail(response, Invariant::Token, "no scope (AUTH-050)");
        }
    } else {
        match v.get("error").and_then(Value::as_str) {
            Some(code) if OAUTH_ERRORS.contains(&code) => {}
            other => seen.fail(
                response,
                Invariant::Token,
                format!("error {other:?} is not an RFC 6749 §5.2 code (AUTH-042)"),
            ),
        }
        if v.get("error_description").is_some_and(|d| !d.is_string()) {
            seen.fail(response, Invariant::Token, "error_description is not a string (RFC 6749 §5.2)");
        }
    }
}

/// The discovery document (AUTH-002..AUTH-007).
fn discovery(seen: &mut Observation, response: &CapturedResponse, bytes: &[u8]) {
    if essence(response.header("content-type")) != "application/json" {
        seen.fail(response, Invariant::Discovery, "discovery is not application/json (AUTH-002)");
    }
    let v = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => v,
        Err(e) => return seen.fail(response, Invariant::Discovery, format!("discovery is not JSON: {e}")),
    };
    if let Some(path) = first_null(&v, "$") {
        seen.fail(response, Invariant::Discovery, format!("null at {path}"));
    }
    if let Some(members) = v.as_object() {
        for (k, url) in members.iter().filter(|(k, _)| k.ends_with("_endpoint")) {
            if !url.as_str().is_some_and(is_absolute_url) {
                seen.fail(response, Invariant::AbsoluteUrls, format!("{k} {url} is not an absolute URL (AUTH-003)"));
            }
        }
    }
    let lists = |k: &str, wanted: &[&str]| {
        v.get(k)
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| wanted.contains(&s))))
    };
    let required = [
        ("token_endpoint", v.get("token_endpoint").is_some(), "AUTH-004"),
        (
            "grant_types_supported with client_credentials",
            lists("grant_types_supported", &["client_credentials"]),
            "AUTH-005",
        ),
        (
            "capabilities with client-confidential-asymmetric",
            lists("capabilities", &["client-confidential-asymmetric"]),
            "AUTH-006",
        ),
        (
            "token_endpoint_auth_methods_supported with private_key_jwt",
            lists("token_endpoint_auth_methods_supported", &["private_key_jwt"]),
            "AUTH-007",
        ),
        (
            "token_endpoint_auth_signing_alg_values_supported with RS384 or ES384",
            lists("token_endpoint_auth_signing_alg_values_supported", &["RS384", "ES384"]),
            "AUTH-007",
        ),
        ("scopes_supported", v.get("scopes_supported").is_some_and(Value::is_array), "AUTH-007"),
    ];
    for (what, present, id) in required {
        if !present {
            seen.fail(response, Invariant::Discovery, format!("no {what} ({id})"));
        }
    }
}

/// What only several responses show: a file's lines against its manifest
/// entry's `count` (SRV-160) and `type` (SRV-157, SRV-175), and its SHA-256.
pub fn cross_check(seen: &mut Observation) {
    let mut found = Vec::new();
    for (path, served) in &seen.served {
        for listed in seen.files.get(path).into_iter().flatten() {
            for file in served {
                let declared = |i: Invariant| listed.deliberate.contains(&i) || file.deliberate.contains(&i);
                let at = || format!("{} (listed at {})", file.at, listed.at);
                // Organised output: block headers (Parameters) are not resources of the count.
                let resources =
                    file.types.iter().filter(|t| !(listed.organised && t.as_str() == "Parameters")).count() as u64;
                if let Some(count) = listed.count.filter(|&c| c != resources && !declared(Invariant::Count)) {
                    found.push(Violation {
                        invariant: Invariant::Count,
                        at: at(),
                        message: format!(
                            "the manifest's {} count is {count}, the file holds {resources} resources (SRV-160)",
                            listed.member
                        ),
                    });
                }
                if let Some(kind) =
                    listed.kind.as_deref().filter(|_| !listed.organised && !declared(Invariant::LineType))
                    && let Some((n, other)) = file.types.iter().enumerate().find(|(_, t)| t.as_str() != kind)
                {
                    found.push(Violation {
                        invariant: Invariant::LineType,
                        at: at(),
                        message: format!("line {} is a {other} in a file listed as {kind} (SRV-157)", n + 1),
                    });
                }
                if let Some(sha) =
                    listed.sha256.as_deref().filter(|s| *s != file.sha256 && !declared(Invariant::Digest))
                {
                    found.push(Violation {
                        invariant: Invariant::Digest,
                        at: at(),
                        message: format!("the manifest's SHA-256 {sha} is not the file's {}", file.sha256),
                    });
                }
            }
        }
    }
    seen.violations.extend(found);
}
