//! Authorization: assertions, token requests, token reuse and renewal.

use std::collections::HashMap;

use serde_json::Value;

use super::wire::{Route, has_token, host_of, request_header, route};
use super::{Check, Finding, Input, Level};
use bulkmock_server::Exchange;

/// The family's checks.
pub const CHECKS: &[Check] = &[
    Check {
        id: "auth.discovery",
        title: "the token endpoint is discovered with GET .well-known/smart-configuration",
        requirements: &["CLI-010"],
        level: Level::May,
        always: true,
        run: discovery,
    },
    Check {
        id: "auth.fresh_jti",
        title: "a fresh, single-use jti in every assertion",
        requirements: &["CLI-020", "CLI-022"],
        level: Level::Must,
        always: true,
        run: fresh_jti,
    },
    Check {
        id: "auth.assertion_header",
        title: "assertion header: typ JWT, an asymmetric alg, a kid",
        requirements: &["CLI-021", "CLI-023"],
        level: Level::Must,
        always: true,
        run: assertion_header,
    },
    Check {
        id: "auth.assertion_claims",
        title: "assertion claims: iss = sub = client_id, aud exactly the token URL, exp at most 5 minutes ahead",
        requirements: &["CLI-022", "CLI-007"],
        level: Level::Must,
        always: true,
        run: assertion_claims,
    },
    Check {
        id: "auth.token_request_form",
        title: "token request: a form with grant_type, client_assertion_type, client_assertion and scope",
        requirements: &["CLI-024"],
        level: Level::Must,
        always: true,
        run: token_request_form,
    },
    Check {
        id: "auth.token_reused",
        title: "a token is reused while valid, not fetched per request",
        requirements: &["CLI-027"],
        level: Level::Should,
        always: true,
        run: token_reused,
    },
    Check {
        id: "auth.token_renewed",
        title: "a new token after a 401 or expiry, without looping",
        requirements: &["CLI-027", "CLI-081", "CLI-028"],
        level: Level::Must,
        always: true,
        run: token_renewed,
    },
    Check {
        id: "auth.no_token_to_other_host",
        title: "no bearer token sent to another host",
        requirements: &["CLI-031"],
        level: Level::Should,
        always: true,
        run: no_token_to_other_host,
    },
];

fn token_requests<'a>(input: &'a Input) -> impl Iterator<Item = &'a Exchange> {
    input.exchanges.iter().filter(|e| route(e) == Some(Route::Token))
}

fn fresh_jti(input: &Input) -> Finding {
    let mut seen: HashMap<&str, &Exchange> = HashMap::new();
    let mut any = false;
    for e in token_requests(input) {
        let Some(jti) = e.assertion.as_ref().and_then(|a| a["claims"]["jti"].as_str()) else { continue };
        any = true;
        if let Some(first) = seen.get(jti) {
            return Finding::miss(format!("jti {jti:?} was sent in two assertions"), [*first, e]);
        }
        seen.insert(jti, e);
    }
    if any { Finding::Pass } else { Finding::skip("no token request with an assertion") }
}

fn assertion_header(input: &Input) -> Finding {
    let mut any = false;
    for e in token_requests(input) {
        let Some(header) = e.assertion.as_ref().map(|a| &a["header"]) else { continue };
        any = true;
        let alg = header["alg"].as_str().unwrap_or("");
        let problem = if header["typ"].as_str() != Some("JWT") {
            Some(format!("typ is {} (must be \"JWT\")", header["typ"]))
        } else if !matches!(&alg[..alg.len().min(2)], "RS" | "ES" | "PS") {
            Some(format!("alg {alg:?} is not an asymmetric algorithm (RS384 or ES384)"))
        } else if header["kid"].as_str().is_none_or(str::is_empty) {
            Some("no kid".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Finding::miss(format!("assertion header: {problem}"), [e]);
        }
    }
    if any { Finding::Pass } else { Finding::skip("no token request with an assertion") }
}

fn assertion_claims(input: &Input) -> Finding {
    let mut any = false;
    for e in token_requests(input) {
        let Some(claims) = e.assertion.as_ref().map(|a| &a["claims"]) else { continue };
        any = true;
        if let Some(problem) = claims_problem(claims, input, e) {
            return Finding::miss(format!("assertion claims: {problem}"), [e]);
        }
    }
    if any { Finding::Pass } else { Finding::skip("no token request with an assertion") }
}

fn claims_problem(claims: &Value, input: &Input, e: &Exchange) -> Option<String> {
    let iss = claims["iss"].as_str().unwrap_or("");
    let sub = claims["sub"].as_str().unwrap_or("");
    if iss != input.client_id || sub != input.client_id {
        return Some(format!("iss {iss:?} and sub {sub:?} must both be the client id {:?}", input.client_id));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(s) => s == input.token_url,
        Value::Array(a) => a.len() == 1 && a[0].as_str() == Some(input.token_url),
        _ => false,
    };
    if !aud_ok {
        return Some(format!("aud {} must be exactly the token URL {:?}", claims["aud"], input.token_url));
    }
    let now_s = e.unix_ms as f64 / 1000.0;
    let Some(exp) = claims["exp"].as_f64() else { return Some("no numeric exp".into()) };
    if exp > now_s + 300.0 + 5.0 {
        return Some(format!("exp is {:.0} s ahead (at most 300 s)", exp - now_s));
    }
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        return Some("no jti".into());
    }
    None
}

fn token_request_form(input: &Input) -> Finding {
    let mut any = false;
    for e in token_requests(input) {
        any = true;
        let form = e.form.clone().unwrap_or_default();
        let content_type = request_header(e, "content-type").unwrap_or("");
        let problem = if !content_type.starts_with("application/x-www-form-urlencoded") {
            Some(format!("Content-Type is {content_type:?}, not application/x-www-form-urlencoded"))
        } else if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            Some(format!("grant_type is {:?}, not client_credentials", form.get("grant_type")))
        } else if form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            Some(format!("client_assertion_type is {:?}", form.get("client_assertion_type")))
        } else if e.assertion.is_none() {
            Some("no decodable client_assertion".into())
        } else if form.get("scope").is_none_or(|s| s.trim().is_empty()) {
            Some("no scope".into())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Finding::miss(format!("token request: {problem}"), [e]);
        }
    }
    if any { Finding::Pass } else { Finding::skip("no token request") }
}

/// A token request is needless when the previous token had more than half its
/// lifetime left and more than [`RENEWAL_MARGIN_S`] (clients renew ahead of
/// expiry, by a margin that can exceed a short token's whole life), was used,
/// and no 401 came in between.
/// How long before expiry a client may renew a token without being told it
/// renews needlessly.
const RENEWAL_MARGIN_S: u64 = 60;

fn token_reused(input: &Input) -> Finding {
    let mut last_issued: Option<(&Exchange, u64, String)> = None;
    // Refusals not yet answered by a token request: a parallel client may have
    // several requests refused and renew once for each, some after a newer
    // token was issued (each renewal answers one refusal).
    let mut unanswered_refusals = 0u64;
    let mut used_since = false;
    let mut exercised = false;
    // Each run of an incremental case is a new start of the client: its first token is no reuse question.
    let run_starts: Vec<u64> = input.runs.iter().skip(1).map(|r| r.first_seq).collect();
    for e in input.exchanges {
        if route(e) == Some(Route::Token) {
            if let Some((issued_at, ..)) = &last_issued
                && run_starts.iter().any(|&start| issued_at.seq < start && start <= e.seq)
            {
                last_issued = None;
            }
            if let Some((issued_at, lifetime_s, _)) = &last_issued {
                exercised = true;
                let left_ms = (issued_at.unix_ms + lifetime_s * 1000).saturating_sub(e.unix_ms);
                let plenty = left_ms > lifetime_s * 500 && left_ms > RENEWAL_MARGIN_S * 1000;
                if unanswered_refusals == 0 && used_since && plenty {
                    return Finding::miss(
                        format!(
                            "a new token was requested {:.1} s after the last one, which was valid for {lifetime_s} s and not refused",
                            (e.unix_ms - issued_at.unix_ms) as f64 / 1000.0
                        ),
                        [*issued_at, e],
                    );
                }
            }
            unanswered_refusals = unanswered_refusals.saturating_sub(1);
            if let Some(issued) = &e.issued {
                let lifetime = issued["expires_in"]
                    .as_u64()
                    .or_else(|| issued["expires_in"].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(300);
                let fp = issued["fingerprint"].as_str().unwrap_or_default().to_string();
                last_issued = Some((e, lifetime, fp));
                used_since = false;
            }
        } else if e.status == 401 {
            unanswered_refusals += 1;
        } else if let Some((_, _, fp)) = &last_issued
            && super::wire::token_fingerprint(e) == Some(fp.as_str())
        {
            used_since = true;
        }
    }
    if exercised { Finding::Pass } else { Finding::skip("at most one token was needed") }
}

/// Judged per token, never per request: a client with requests in flight sees
/// one refusal per request when its token is revoked, and all of them are one
/// refusal of one token.
fn token_renewed(input: &Input) -> Finding {
    // A refused token: a 401 on a FHIR route to a request that carried one.
    let fhir_401 = |e: &Exchange| {
        e.status == 401 && has_token(e) && !matches!(route(e), None | Some(Route::Token | Route::Metadata))
    };
    let refusals: Vec<(usize, &Exchange)> = input.exchanges.iter().enumerate().filter(|(_, e)| fhir_401(e)).collect();
    if refusals.is_empty() {
        return Finding::skip("no token was refused with 401");
    }
    // Each refused token must be followed by a newer one: a token request after
    // the refused token was issued (before or after the refusal: a parallel
    // client may have renewed already), else after the refusal itself.
    let mut seen: Vec<Option<&str>> = Vec::new();
    for (i, e) in &refusals {
        let fp = super::wire::token_fingerprint(e);
        if seen.contains(&fp) {
            continue;
        }
        seen.push(fp);
        let issued_at = fp.and_then(|fp| {
            input.exchanges.iter().position(|x| x.issued.as_ref().and_then(|t| t["fingerprint"].as_str()) == Some(fp))
        });
        let from = issued_at.unwrap_or(*i) + 1;
        let renewed = input.exchanges[from..].iter().any(|x| route(x) == Some(Route::Token));
        if !renewed {
            if let Some(reason) = input.stopped_after(e) {
                return Finding::Skip(reason);
            }
            return Finding::miss(
                "a 401 on a FHIR route was not followed by a token request: the token was never renewed",
                [*e],
            );
        }
    }
    // Looping: token after token refused with nothing else succeeding. Counted
    // in distinct tokens since the last request that made progress.
    let mut refused: Vec<Option<&str>> = Vec::new();
    for e in input.exchanges {
        if fhir_401(e) {
            let fp = super::wire::token_fingerprint(e);
            if !refused.contains(&fp) {
                refused.push(fp);
            }
            if refused.len() > LOOP_TOKENS {
                return Finding::miss(
                    format!(
                        "{} different tokens refused in a row with no request succeeding in between: renewing in a loop",
                        refused.len()
                    ),
                    [e],
                );
            }
        } else if route(e) != Some(Route::Token) && e.status < 400 {
            refused.clear();
        }
    }
    Finding::Pass
}

/// Fresh tokens refused in a row, with no progress, past which renewal is a loop.
const LOOP_TOKENS: usize = 5;

/// Hosts the server itself named for the token: the FHIR base's, and those of
/// kick-off `Content-Location`s (a status URL may be on another host, CLI-060).
/// Redirect targets and data references are not among them.
fn no_token_to_other_host(input: &Input) -> Finding {
    let own = host_of(input.fhir_base);
    let status_hosts: Vec<&str> = input
        .exchanges
        .iter()
        .filter(|e| route(e) == Some(Route::Kickoff))
        .filter_map(|e| super::wire::response_header(e, "content-location"))
        .filter(|l| l.contains("://"))
        .map(host_of)
        .collect();
    let mut other = false;
    for e in input.exchanges {
        let Some(host) = request_header(e, "host") else { continue };
        let named = status_hosts.contains(&host) && matches!(route(e), Some(Route::Status | Route::Delete));
        if host != own && route(e) != Some(Route::Token) && !named {
            other = true;
            if has_token(e) {
                return Finding::miss(format!("the bearer token was sent to {host}, not the FHIR server {own}"), [e]);
            }
        }
    }
    if other { Finding::Pass } else { Finding::skip("no request went to another host") }
}

fn discovery(input: &Input) -> Finding {
    let first_token = input.exchanges.iter().position(|e| route(e) == Some(Route::Token));
    let Some(first_token) = first_token else { return Finding::skip("no token request") };
    let discovered = input.exchanges[..first_token]
        .iter()
        .any(|e| e.method == "GET" && e.path.ends_with("/.well-known/smart-configuration"));
    if discovered {
        Finding::Pass
    } else {
        Finding::miss(
            "the token endpoint was used without GET .well-known/smart-configuration first (it was configured)",
            None,
        )
    }
}
