//! `bulkmock run`: run a client against scenarios and judge it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bulkmock_harness::adapter::{Builtin, ClientAdapter, Command};
use bulkmock_harness::report::terminal;
use bulkmock_harness::runner::{self, Identity, Progress, RunOptions};
use bulkmock_harness::suite::ScenarioSuite;
use clap::Args;

/// Flags of `bulkmock run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The scenarios: paths, `--suite builtin`, or (neither) ./scenarios when present, else the built-in suite.
    #[command(flatten)]
    suite: crate::scenarios::SuiteArgs,
    /// The client: `builtin` (the in-process reference client).
    #[arg(long, default_value = "builtin", conflicts_with = "client_cmd")]
    client: String,
    /// A command template run once per case by `sh -c`, e.g. 'my-client --base {fhir_base} --out {out_dir}'.
    #[arg(long, env = "BULKMOCK_CLIENT_CMD")]
    client_cmd: Option<String>,
    /// A config file template rendered per case to {config_file} (its name without `.tmpl`).
    #[arg(long, requires = "client_cmd")]
    client_config_template: Option<PathBuf>,
    /// Register this client id in every case instead of a generated one (with --client-jwks).
    #[arg(long, requires = "client_jwks")]
    client_id: Option<String>,
    /// The public JWKS of --client-id.
    #[arg(long, requires = "client_id")]
    client_jwks: Option<PathBuf>,
    /// The private key (PEM) of --client-id, for {private_key_pem}.
    #[arg(long, requires = "client_id")]
    client_key: Option<PathBuf>,
    /// Cases at once (default: 8 per core, waiting clients need no core; with
    /// --upstream one, so a real server's rate limiter is not set off).
    #[arg(long)]
    jobs: Option<usize>,
    /// Only cases whose id starts with this (repeatable).
    #[arg(long)]
    filter: Vec<String>,
    /// Only shard K of N (`2/8`): every case is in exactly one shard.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    /// Seed of data, ids and probabilistic faults; printed in every report.
    #[arg(long, env = "BULKMOCK_SEED", default_value_t = 42)]
    seed: u64,
    /// Multiply every case's max_seconds by F (> 0), for clients that wait
    /// longer than the suite allows (60 s before a retry, say); shown in every report.
    /// With --upstream the default is 10 (a real server's jobs take what they take).
    #[arg(long, env = "BULKMOCK_TIME_SCALE", value_parser = parse_time_scale)]
    time_scale: Option<f64>,
    /// What the client supports (TOML: levels, kick-off methods, parameters,
    /// Prefer options, incremental runs, HTTPS, JWKS URL, manifest shapes,
    /// time_scale): cases needing more are reported `not applicable`, not run.
    /// docs/clients.md has a complete example.
    #[arg(long, env = "BULKMOCK_CLIENT_PROFILE")]
    client_profile: Option<PathBuf>,
    /// Keep each case's folder (keys, output, config) and print where.
    #[arg(long)]
    keep: bool,
    /// Where case folders go (default: the system's temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Report files: --json, --junit, --markdown, --html.
    #[command(flatten)]
    outputs: crate::report_cli::Outputs,
    /// Fail on SHOULD failures too (exit code 1 on any warn).
    #[arg(long)]
    strict: bool,
    /// Show every check, passed and skipped ones too.
    #[arg(long, short)]
    verbose: bool,
    /// Run the cases against this real Bulk Data server (its FHIR base) through
    /// a proxy with each case's faults, instead of each case's own mock; the
    /// upstream's client comes from --client-id, --client-jwks and --client-key.
    /// Cases that need the mock's data or settings are `not applicable`.
    #[arg(long, env = "BULKMOCK_UPSTREAM", requires = "client_key")]
    upstream: Option<String>,
    /// Trust this CA certificate (PEM) for an https --upstream; repeatable.
    #[arg(long = "upstream-ca-cert", requires = "upstream")]
    upstream_ca_cert: Vec<PathBuf>,
}

/// The `--upstream` target, its CA certificates read.
fn upstream(args: &RunArgs) -> Result<Option<runner::upstream::UpstreamTarget>, String> {
    let Some(base) = &args.upstream else { return Ok(None) };
    let mut ca_certs = Vec::new();
    for path in &args.upstream_ca_cert {
        ca_certs
            .push(std::fs::read_to_string(path).map_err(|e| format!("--upstream-ca-cert {}: {e}", path.display()))?);
    }
    Ok(Some(runner::upstream::UpstreamTarget { base: base.trim_end_matches('/').to_string(), ca_certs }))
}

fn parse_time_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 100.0 => Ok(f),
        _ => Err(format!("{s:?} is not a time scale: a number above 0 and at most 100 (2 doubles every deadline)")),
    }
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s.split_once('/').ok_or("a shard is K/N, e.g. 2/8")?;
    let (k, n): (u64, u64) =
        (k.parse().map_err(|_| "K must be a number")?, n.parse().map_err(|_| "N must be a number")?);
    if n == 0 || k == 0 || k > n {
        return Err(format!("shard {k}/{n}: K must be between 1 and N"));
    }
    Ok((k, n))
}

fn adapter(args: &RunArgs) -> Result<Arc<dyn ClientAdapter>, String> {
    let Some(cmd) = &args.client_cmd else {
        return match args.client.as_str() {
            "builtin" => Ok(Arc::new(Builtin::default())),
            other => {
                Err(format!("--client {other:?}: the only built-in client is `builtin`; use --client-cmd for others"))
            }
        };
    };
    let config = match &args.client_config_template {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let file_name = path.file_name().map(PathBuf::from).unwrap_or_else(|| "client.conf".into());
            let file_name = match file_name.to_string_lossy().strip_suffix(".tmpl") {
                Some(stem) => PathBuf::from(stem),
                None => file_name,
            };
            Some((text, path.display().to_string(), file_name))
        }
        None => None,
    };
    let command = Command::new(cmd, config.as_ref().map(|(t, n, f)| (t.as_str(), n.as_str(), f.clone())))?;
    Ok(Arc::new(command))
}

fn identity(args: &RunArgs) -> Result<Option<Identity>, String> {
    let (Some(id), Some(jwks_path)) = (&args.client_id, &args.client_jwks) else { return Ok(None) };
    let text = std::fs::read_to_string(jwks_path).map_err(|e| format!("--client-jwks {}: {e}", jwks_path.display()))?;
    let jwks: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("--client-jwks {}: not JSON: {e}", jwks_path.display()))?;
    let kid = jwks["keys"][0]["kid"]
        .as_str()
        .ok_or_else(|| format!("--client-jwks {}: no keys[0].kid", jwks_path.display()))?
        .to_string();
    Ok(Some(Identity { client_id: id.clone(), jwks, private_key_pem: args.client_key.clone(), kid }))
}

fn rerun_prefix(args: &RunArgs, suite: &ScenarioSuite) -> String {
    let mut parts = vec!["bulkmock run".to_string()];
    parts.extend(crate::scenarios::SuiteArgs::rerun_args(suite));
    if let Some(cmd) = &args.client_cmd {
        parts.push(format!("--client-cmd {}", bulkmock_harness::adapter::template::shell_quote(cmd)));
    }
    if let Some(t) = &args.client_config_template {
        parts.push(format!("--client-config-template {}", t.display()));
    }
    if let Some(profile) = &args.client_profile {
        parts.push(format!("--client-profile {}", profile.display()));
    }
    if let Some(scale) = args.time_scale {
        parts.push(format!("--time-scale {scale}"));
    }
    if args.keep {
        parts.push("--keep".into());
    }
    parts.join(" ")
}

/// Cases at once, the time scale, and a note for the time scale when it is
/// `--upstream`'s default. A `--time-scale` given wins, then a profile's other
/// than 1; against an upstream the defaults are one case at a time and
/// [`runner::upstream::DEFAULT_TIME_SCALE`] (a real server's pace is its own,
/// and its rate limiter counts every case from this address).
fn pace(jobs: Option<usize>, given: Option<f64>, profile: Option<f64>, upstream: bool) -> (usize, f64, &'static str) {
    let jobs = jobs.unwrap_or(if upstream { runner::upstream::DEFAULT_JOBS } else { runner::default_jobs() });
    let chosen = given.or(profile.filter(|&s| s != 1.0));
    match chosen {
        Some(scale) => (jobs, scale, ""),
        None if upstream => (
            jobs,
            runner::upstream::DEFAULT_TIME_SCALE,
            " (the --upstream default: a real server's jobs take what they take; --time-scale sets another)",
        ),
        None => (jobs, 1.0, ""),
    }
}

/// Runs the scenarios; exit 0 only when no MUST check failed (`--strict`: no SHOULD either).
pub fn run(args: RunArgs) -> ExitCode {
    let usage = |message: String| {
        eprintln!("bulkmock run: {message}");
        ExitCode::from(2)
    };
    let (suite, suite_text) = match args.suite.load() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let adapter = match adapter(&args) {
        Ok(a) => a,
        Err(e) => return usage(e),
    };
    let identity = match identity(&args) {
        Ok(i) => i,
        Err(e) => return usage(e),
    };
    let upstream = match upstream(&args) {
        Ok(u) => u,
        Err(e) => return usage(e),
    };
    let profile = match &args.client_profile {
        Some(path) => match bulkmock_harness::profile::ClientProfile::load(path) {
            Ok(p) => Some(p),
            Err(e) => return usage(format!("--client-profile {e}")),
        },
        None => None,
    };
    let (jobs, time_scale, scale_note) =
        pace(args.jobs, args.time_scale, profile.as_ref().map(|p| p.time_scale), upstream.is_some());
    // The suite is the selection before sharding: every shard of a run carries the same one.
    let selected = runner::select(suite.cases().cloned().collect(), &args.filter, None);
    let suite_identity = suite.identity_of(&selected);
    if selected.is_empty() {
        return usage(format!("no case matches (check the paths and --filter): {suite_text}"));
    }
    // An empty shard is a valid (empty) result: `report merge` still needs it.
    let cases = runner::select(selected, &[], args.shard);
    let options = RunOptions {
        jobs,
        seed: args.seed,
        keep: args.keep,
        work_dir: args.work_dir.clone(),
        identity,
        rerun_prefix: rerun_prefix(&args, &suite),
        time_scale,
        profile,
        upstream,
        ..RunOptions::default()
    };
    let total = cases.len();
    let profile_name = options.profile.as_ref().map(|p| format!(", profile {:?}", p.name)).unwrap_or_default();
    eprintln!("bulkmock run: {suite_text}, digest {}", suite_identity.digest);
    eprintln!(
        "bulkmock run: {total} cases, seed {}, client {}{profile_name}, time scale {time_scale}{scale_note}",
        args.seed,
        adapter.name(),
    );
    if options.upstream.is_some() {
        eprintln!("bulkmock run: against the upstream, {jobs} case(s) at a time (--jobs sets more)");
    }
    let live = Live::new(total, std::io::stderr().is_terminal(), args.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return usage(format!("cannot start a runtime: {e}")),
    };
    let mut report = match runtime.block_on(runner::run(cases, adapter, &options, &|p| live.on(p))) {
        Ok(r) => r,
        Err(e) => return usage(format!("cannot create the case folders: {e}")),
    };
    report.suite = Some(suite_identity);
    report.client_profile = options.profile.as_ref().map(|p| p.name.clone());
    live.finish();
    print!("{}", terminal::summary(&report));
    if let Err(e) = args.outputs.write(&report) {
        return usage(e);
    }
    if report.passed(args.strict) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Live progress: a bar with done / running / failed on a terminal, plain lines otherwise.
struct Live {
    bar: Option<indicatif::ProgressBar>,
    verbose: bool,
    counts: Mutex<(usize, usize)>,
}

impl Live {
    fn new(total: usize, terminal: bool, verbose: bool) -> Live {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} cases  {msg}").expect("a valid template"),
            );
            bar
        });
        Live { bar, verbose, counts: Mutex::new((0, 0)) }
    }

    fn on(&self, p: Progress) {
        let mut counts = self.counts.lock().expect("progress");
        match p {
            Progress::Started(_) => counts.0 += 1,
            Progress::Finished(case) => {
                counts.0 -= 1;
                if !matches!(
                    case.verdict,
                    bulkmock_harness::report::CaseVerdict::Pass | bulkmock_harness::report::CaseVerdict::Warn
                ) {
                    counts.1 += 1;
                }
                let text = terminal::case_lines(case, self.verbose);
                match &self.bar {
                    Some(bar) => {
                        bar.println(text.trim_end());
                        bar.inc(1);
                    }
                    None => print!("{text}"),
                }
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} running, {} failed", counts.0, counts.1));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_runs_one_case_at_a_time_on_a_generous_scale_unless_told_otherwise() {
        let up = runner::upstream::DEFAULT_TIME_SCALE;
        assert_eq!(pace(None, None, None, true).0, 1);
        assert_eq!(pace(None, None, None, true).1, up);
        assert!(pace(None, None, None, true).2.contains("--upstream default"));
        assert_eq!(pace(Some(4), Some(2.0), None, true), (4, 2.0, ""), "given flags win");
        assert_eq!(pace(None, None, Some(3.0), true).1, 3.0, "a profile's scale wins over the default");
        assert_eq!(pace(None, None, Some(1.0), true).1, up);
        // The mock's pace is unchanged.
        assert_eq!(pace(None, None, None, false), (runner::default_jobs(), 1.0, ""));
        assert_eq!(pace(None, None, Some(1.0), false).1, 1.0);
        assert_eq!(pace(Some(3), Some(2.0), None, false), (3, 2.0, ""));
    }
}
