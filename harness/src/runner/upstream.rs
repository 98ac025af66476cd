//! `bulkmock run --upstream URL`: each case against a real Bulk Data server
//! instead of its own mock. The case's `[server]` is replaced by the upstream:
//! a proxy (`bulkmock_server::proxy`, in-process, port 0) stands between the
//! client and the upstream with the case's faults, and records what the
//! upstream served; the case is judged from the proxy's transcript and record
//! ([`super::proxied`]). Cases that need the synthetic server's data or
//! settings, or faults only it can make, are `not_applicable`, saying which.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulkmock_server::ServerConfig;
use bulkmock_server::proxy::{self, ProxyConfig};

use super::{RunOptions, errored, judge, proxied, run_bounded};
use crate::adapter::{CaseContext, ClientAdapter};
use crate::report::{CaseResult, CaseVerdict};
use crate::scenario::{Alg, Case, JwksMode, ServerSpec};

/// The time scale of `--upstream` runs when none is given (no `--time-scale`,
/// no profile's): a case's `max_seconds` was written for the mock's pace, and a
/// real server's jobs take what they take (SMART's reference server took 19.5 s
/// for a case of 20 s), so every deadline is ten times as long. Shown in every
/// report as any time scale is.
pub const DEFAULT_TIME_SCALE: f64 = 10.0;

/// Cases at once in `--upstream` runs without `--jobs`: one. Many clients at
/// once from one address set off a real server's rate limiter (SMART's answers
/// 429), which the cases would then report as the client's timeouts.
pub const DEFAULT_JOBS: usize = 1;

/// The real server cases run against.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTarget {
    /// Its FHIR base URL.
    pub base: String,
    /// Extra PEM roots for an https upstream.
    pub ca_certs: Vec<String>,
}

/// Why `case` cannot run against an upstream, if it cannot: what of the
/// synthetic server it needs.
pub fn needs_synthetic(case: &Case) -> Option<String> {
    let spec: &ServerSpec = &case.scenario.server;
    let defaults = ServerSpec::default();
    let client = &case.scenario.client;
    let mut needs = Vec::new();
    if case.scenario.incremental.is_some() {
        needs.push("data that changes between runs ([incremental])".to_string());
    }
    if !spec.auth {
        needs.push("an open server ([server] auth = false)".into());
    }
    let settings = [
        ("token_lifetime_s", spec.token_lifetime_s.is_some()),
        ("clock_skew_s", spec.clock_skew_s.is_some()),
        ("job_polls", spec.job_polls > 0),
        ("resources_per_file", spec.resources_per_file.is_some()),
        ("manifest_page_size", spec.manifest_page_size.is_some()),
        ("job_ttl_s", spec.job_ttl_s.is_some()),
        ("lenient_headers", spec.lenient_headers != defaults.lenient_headers),
        ("file_digests", spec.file_digests),
        ("tls", spec.tls),
        ("quirks", !spec.quirks.is_empty()),
        ("clock_offset_s", spec.clock_offset_s != 0),
        ("density", spec.density != defaults.density),
    ];
    for (name, set) in settings {
        if set {
            needs.push(format!("the mock's setting [server] {name}"));
        }
    }
    if let Some(group) = &client.group {
        needs.push(format!("Group {group:?} of the synthetic data"));
    }
    if !client.patients.is_empty() {
        needs.push("patient ids of the synthetic data".into());
    }
    if client.since.is_some() || client.until.is_some() {
        needs.push("the synthetic data's lastUpdated times (_since/_until)".into());
    }
    if client.jwks == JwksMode::Url {
        needs.push("a client registered with a JWKS URL by the harness".into());
    }
    for (i, rule) in case.scenario.faults.iter().enumerate() {
        if let Err(why) = proxy::support::check_rule(rule) {
            needs.push(format!("fault {}: {why}", i + 1));
        }
    }
    (!needs.is_empty()).then(|| format!("against an upstream: the case needs {}", needs.join("; ")))
}

/// A case's result when it cannot run against the upstream.
fn not_applicable(case: &Case, reason: String, rerun: String) -> CaseResult {
    let mut result = errored(case, String::new(), rerun);
    result.error = None;
    result.outcome.observed = "not_run".into();
    result.not_applicable = Some(reason);
    result.verdict = CaseVerdict::NotApplicable;
    result
}

/// The algorithm of a registered client's key, from its JWKS (`RSA`: RS384, `EC`: ES384).
fn key_alg(jwks: &serde_json::Value) -> Option<Alg> {
    match jwks["keys"][0]["kty"].as_str()? {
        "RSA" => Some(Alg::Rs384),
        "EC" => Some(Alg::Es384),
        _ => None,
    }
}

/// Runs `case` through a proxy in front of `target` and judges it from the proxy's evidence.
pub async fn run_case(
    case: &Case,
    adapter: &dyn ClientAdapter,
    dir: PathBuf,
    options: &RunOptions,
    target: &UpstreamTarget,
    rerun: String,
) -> CaseResult {
    let rerun = format!("{rerun} --upstream {}", target.base);
    if let Some(reason) = needs_synthetic(case) {
        return not_applicable(case, reason, rerun);
    }
    let Some(identity) = &options.identity else {
        let message = "--upstream needs the upstream's registered client: --client-id, --client-jwks and --client-key";
        return errored(case, message.into(), rerun);
    };
    // A case about the algorithm (an `alg` matrix) needs a key of it; others sign with the client's key.
    let key = key_alg(&identity.jwks);
    if let Some(alg) = key.filter(|a| *a != case.scenario.client.alg && case.matrix.contains_key("alg")) {
        let reason = format!(
            "against an upstream: the case signs with {}, the upstream client's key is {}",
            case.scenario.client.alg.as_str(),
            alg.as_str()
        );
        return not_applicable(case, reason, rerun);
    }
    let mut case = case.clone();
    if let Some(alg) = key {
        case.scenario.client.alg = alg;
    }
    let case = &case;
    let deadline = Duration::from_secs_f64(case.scenario.expect.max_seconds) + options.grace;
    match run_through_proxy(case, adapter, &dir, options, target, identity, deadline, &rerun).await {
        Ok(result) => result,
        Err(message) => errored(case, message, rerun),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_through_proxy(
    case: &Case,
    adapter: &dyn ClientAdapter,
    dir: &Path,
    options: &RunOptions,
    target: &UpstreamTarget,
    identity: &super::Identity,
    deadline: Duration,
    rerun: &str,
) -> Result<CaseResult, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let record = dir.join("record.ndjson");
    let mut config =
        ServerConfig { seed: case.scenario.server.seed.unwrap_or(options.seed), ..ServerConfig::default() };
    config.faults.rules.extend(case.scenario.faults.iter().cloned());
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot start the proxy: {e}"))?;
    let origin = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let proxy_config = ProxyConfig {
        upstream: target.base.clone(),
        upstream_ca_certs: target.ca_certs.clone(),
        record_file: Some(record.clone()),
    };
    let state = proxy::state(config, &origin, &proxy_config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(proxy::serve(listener, Arc::clone(&state), async {
        let _ = stopped.await;
    }));
    let upstream = Arc::clone(state.proxy.as_ref().expect("a proxy's state"));
    let token_url = upstream.token_endpoint().await?;
    let ctx = context(case, dir, options.seed, deadline, identity, &state.fhir_base, &token_url)?;
    let count = || state.transcript.count();
    let expect = &case.scenario.expect;
    let run = run_bounded(adapter, &ctx, &count, deadline, expect.max_requests).await;
    let _ = stop.send(());
    let _ = served.await;
    let exchanges = state.transcript.exchanges();
    let export = proxied::read(&record)?;
    let timed_out = run.timed_out;
    let evidence = judge::CaseEvidence {
        case,
        exchanges,
        run,
        job: export.job,
        expected: export.expected,
        out_dir: &ctx.out_dir,
        fhir_base: &state.fhir_base,
        token_url: &ctx.token_url,
        client_id: &ctx.client_id,
        incremental: None,
    };
    let mut result = judge::judge(evidence, rerun.to_string(), options.keep.then(|| dir.display().to_string()));
    proxied::skip_token_endpoint(&mut result, timed_out);
    if options.profile.is_none() {
        super::not_the_request_asked(&mut result);
    }
    Ok(result)
}

/// The client's context: the proxy's base, the upstream's token endpoint, the registered client.
fn context(
    case: &Case,
    dir: &Path,
    seed: u64,
    deadline: Duration,
    identity: &super::Identity,
    fhir_base: &str,
    token_url: &str,
) -> Result<CaseContext, String> {
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let spec = &case.scenario.client;
    let jwks_path = dir.join("jwks.json");
    super::setup::write(&jwks_path, &serde_json::to_string_pretty(&identity.jwks).unwrap_or_default())?;
    let private_key_pem = match &identity.private_key_pem {
        Some(pem) => std::fs::read_to_string(pem).map_err(|e| format!("{}: {e}", pem.display()))?,
        None => String::new(),
    };
    let mut vars = std::collections::BTreeMap::new();
    let pairs = [
        ("fhir_base", fhir_base.to_string()),
        ("token_url", token_url.to_string()),
        ("client_id", identity.client_id.clone()),
        ("kid", identity.kid.clone()),
        ("alg", spec.alg.as_str().to_string()),
        ("scope", spec.scope.clone()),
        ("out_dir", out_dir.display().to_string()),
        ("level", spec.level.as_str().to_string()),
        ("group_id", String::new()),
        ("types", spec.types.join(",")),
        ("type_filters", spec.type_filters.join(" ")),
        ("elements", spec.elements.join(",")),
        ("kickoff_method", spec.kickoff_method().to_string()),
        ("case_id", case.id.clone()),
        ("case_dir", dir.display().to_string()),
        ("jwks", jwks_path.display().to_string()),
        ("seed", seed.to_string()),
    ];
    for (k, v) in pairs.into_iter().chain(super::setup::request_variables(spec)) {
        vars.insert(k.to_string(), v);
    }
    if let Some(pem) = &identity.private_key_pem {
        vars.insert("private_key_pem".into(), pem.display().to_string());
    }
    for (name, _) in crate::adapter::template::VARIABLES {
        vars.entry(name.to_string()).or_default();
    }
    Ok(CaseContext {
        case_id: case.id.clone(),
        fhir_base: fhir_base.to_string(),
        token_url: token_url.to_string(),
        client_id: identity.client_id.clone(),
        kid: identity.kid.clone(),
        alg: spec.alg.as_str().to_string(),
        private_key_pem,
        request: spec.clone(),
        out_dir,
        dir: dir.to_path_buf(),
        variables: vars,
        deadline,
        seed,
    })
}
