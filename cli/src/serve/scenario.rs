//! `bulkmock serve --scenario FILE [--case ID]`: serve exactly one scenario
//! case for a client the harness cannot launch (a hosted service, a GUI app).
//! The server is the case's (`runner::setup::server_config`, the mapping
//! `bulkmock run` uses), the client is registered as `bulkmock run` would
//! (`runner::setup::client`), and the transcript and the judge file are kept
//! so that `bulkmock judge` can judge the case afterwards.

use std::path::Path;
use std::time::Duration;

use bulkmock_harness::adapter::CaseContext;
use bulkmock_harness::runner::record::{self, JudgeFile};
use bulkmock_harness::runner::{folder_name, judge, setup};
use bulkmock_harness::scenario::Case;
use bulkmock_server::app::{AppState, serve_with_grace};

use super::ServeArgs;

/// Serves the case until Ctrl-C; the judge file is written at start, whenever
/// the client's job changes, and once more at the end.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let file = args.scenario.clone().expect("called with --scenario");
    let files = bulkmock_harness::suite::load_scenario(&file).map_err(|e| e.to_string())?;
    let case = judge::pick_case(files.into_iter().flat_map(|f| f.cases).collect(), args.case.as_deref())?;
    judge::single_run(&case)?;
    let dir = args.state_dir.join("cases").join(folder_name(&case.id));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let transcript = args.transcript.clone().unwrap_or_else(|| dir.join("transcript.ndjson"));
    let judge_path = record::judge_path(&transcript);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut config = setup::server_config(&case, args.seed);
        config.public_url = args.base_url.clone();
        config.transcript_file = Some(transcript.clone());
        config.admin = args.admin.config();
        config.dashboard = !args.admin.no_dashboard;
        // HTTPS (`tls = true` or --tls): the state folder's local CA, which the client can keep trusting.
        let tls = super::tls_identity(&args, case.scenario.server.tls)?;
        config.tls = tls.as_ref().map(|(identity, _)| identity.clone());
        // A `jwks = "url"` case hosts its JWKS over HTTPS with this certificate: trust its CA.
        config.auth.jwks_ca_certs.extend(config.tls.as_ref().and_then(|t| t.ca_pem.clone()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = AppState::new(config, &format!("{scheme}://{addr}")).map_err(|e| e.to_string())?;
        let deadline = Duration::from_secs_f64(case.scenario.expect.max_seconds);
        let (ctx, jwks_host) = setup::client(&case, &dir, args.seed, deadline, None, &state).await?;
        let variables = serde_json::to_string_pretty(&ctx.variables).map_err(|e| e.to_string())?;
        let variables_path = dir.join("variables.json");
        std::fs::write(&variables_path, variables + "\n")
            .map_err(|e| format!("cannot write {}: {e}", variables_path.display()))?;
        let dashboard = super::live_checks::install(&state)?;
        state.dashboard.set_scenario(serde_json::json!({
            "id": case.id,
            "title": case.scenario.title,
            "description": case.scenario.description,
            "requirements": case.scenario.requirements,
            "faults": case.scenario.faults,
            "expect": case.scenario.expect,
            "client": case.scenario.client,
        }));
        let base = JudgeFile::new(&case.id, args.seed, &state, &ctx.client_id);
        base.write(&judge_path)?;
        let tls_lines = tls.map(|(_, lines)| lines).unwrap_or_default();
        banner(
            &case,
            &file,
            &ctx,
            &state,
            &transcript,
            &judge_path,
            args.admin.admin,
            &tls_lines,
            dashboard.as_deref(),
        );
        let watcher = tokio::spawn(record::keep_written(state.clone(), base.clone(), judge_path.clone()));
        let grace = args.shutdown_grace;
        let served = serve_with_grace(listener, state.clone(), super::stop_signal(grace), grace).await;
        watcher.abort();
        base.with_job(&state).write(&judge_path)?;
        drop(jwks_host);
        served.map_err(|e| e.to_string())
    })
}

#[allow(clippy::too_many_arguments)]
fn banner(
    case: &Case,
    file: &Path,
    ctx: &CaseContext,
    state: &AppState,
    transcript: &Path,
    judge_path: &Path,
    admin: bool,
    tls_lines: &[String],
    dashboard: Option<&str>,
) {
    let var = |name: &str| ctx.variables.get(name).cloned().unwrap_or_default();
    println!("bulkmock serving scenario case {} on {}", case.id, state.origin());
    println!("  title:      {}", case.scenario.title);
    println!("  FHIR base:  {}", state.fhir_base);
    if let Some(line) = dashboard {
        println!("{line}");
    }
    for line in tls_lines {
        println!("{line}");
    }
    if ctx.client_id.is_empty() {
        println!("  access:     open (no authorization)");
    } else {
        println!("  token URL:  {}", ctx.token_url);
        println!("  client id:  {}", ctx.client_id);
        println!("  client key: {} ({}, kid {})", var("private_key_pem"), ctx.alg, ctx.kid);
        println!("  key files:  {} (JWK), {} (public JWKS)", var("private_key_jwk"), var("jwks"));
        if !var("jwks_url").is_empty() {
            println!("  JWKS URL:   {} (registered by URL)", var("jwks_url"));
        }
        println!("  scope:      {}", var("scope"));
    }
    let request: Vec<String> =
        ["level", "group_id", "types", "since", "until", "type_filters", "elements", "kickoff_method"]
            .iter()
            .filter(|k| !var(k).is_empty())
            .map(|k| format!("{k}={}", var(k)))
            .collect();
    println!("  export:     {}  (all of it: [client] in {})", request.join(" "), file.display());
    println!("  output:     {} (suggested; judge names the folder)", ctx.out_dir.display());
    println!("  variables:  {}", ctx.dir.join("variables.json").display());
    let rules = state.faults.list().len();
    if rules > 0 {
        println!("  faults:     {rules} rule(s) from the scenario");
    }
    if admin {
        println!("  admin:      {}/_admin/faults, /_admin/transcript, /_admin/reset", state.origin());
    }
    println!("  transcript: {}", transcript.display());
    println!("  judge file: {}", judge_path.display());
    println!(
        "  then:       bulkmock judge --scenario {} --case '{}' --transcript {} --out <the client's output folder>",
        file.display(),
        case.id,
        transcript.display()
    );
    println!("Press Ctrl-C to stop.");
}
