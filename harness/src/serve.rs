//! `bulkmock serve`: flags, bind, Ctrl-C, and the banner.

use std::path::PathBuf;
use std::time::Duration;

use bulkmock_server::ServerConfig;
use bulkmock_server::app::{AppState, serve};
use clap::Args;

/// Flags of `bulkmock serve`; each can also come from an environment variable.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BULKMOCK_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free port (the chosen one is printed).
    #[arg(long, env = "BULKMOCK_PORT", default_value_t = 8080)]
    port: u16,
    /// Public origin used in links, e.g. https://mock.example.org, when behind a proxy.
    #[arg(long, env = "BULKMOCK_BASE_URL")]
    base_url: Option<String>,
    /// Patients in the synthetic population.
    #[arg(long, env = "BULKMOCK_PATIENTS", default_value_t = 100)]
    patients: u64,
    /// Seed of the data set and job ids.
    #[arg(long, env = "BULKMOCK_SEED", default_value_t = 42)]
    seed: u64,
    /// Resources per output file, at most.
    #[arg(long, env = "BULKMOCK_RESOURCES_PER_FILE", default_value_t = 10_000)]
    resources_per_file: u64,
    /// How long a job stays in progress at least, e.g. 2s, 500ms, 1m.
    #[arg(long, env = "BULKMOCK_JOB_DURATION", default_value = "2s", value_parser = parse_duration)]
    job_duration: Duration,
    /// How long files stay available after a job completes.
    #[arg(long, env = "BULKMOCK_JOB_TTL", default_value = "1h", value_parser = parse_duration)]
    job_ttl: Duration,
    /// Files per manifest page when a client sends allowPartialManifests=true.
    #[arg(long, env = "BULKMOCK_MANIFEST_PAGE_SIZE", default_value_t = 10)]
    manifest_page_size: usize,
    /// Serve the *.ndjson files of this folder instead of the synthetic population.
    #[arg(long, env = "BULKMOCK_DATA")]
    data: Option<PathBuf>,
    /// Open access: no authorization on any route.
    #[arg(long, env = "BULKMOCK_OPEN")]
    open: bool,
}

/// Parses `500ms`, `2s`, `1m`, `1h` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration such as 500ms, 2s, 1m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Runs the server until Ctrl-C.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let config = ServerConfig {
            seed: args.seed,
            patients: args.patients,
            resources_per_file: args.resources_per_file,
            job_duration: args.job_duration,
            job_ttl: args.job_ttl,
            manifest_page_size: args.manifest_page_size,
            public_url: args.base_url,
            data_dir: args.data.clone(),
            open: true,
        };
        let state = AppState::new(config, &format!("http://{addr}")).map_err(|e| e.to_string())?;
        let source = match &args.data {
            Some(dir) => format!("NDJSON files in {} ({} patients)", dir.display(), state.source.patient_count()),
            None => format!("synthetic, {} patients, seed {}", args.patients, args.seed),
        };
        println!("bulkmock serving FHIR Bulk Data on http://{addr}");
        println!("  FHIR base:  {}", state.fhir_base);
        println!("  data:       {source}");
        println!(
            "  groups:     {}",
            state.source.groups().iter().map(|g| g.id.as_str()).collect::<Vec<_>>().join(", ")
        );
        println!("  access:     open (no authorization)");
        println!("  try:        curl -i -H 'Prefer: respond-async' '{}/$export'", state.fhir_base);
        println!("Press Ctrl-C to stop.");
        serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("bulkmock: shutting down");
        })
        .await
        .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("2 weeks").unwrap_err().contains("unknown unit"));
    }
}
