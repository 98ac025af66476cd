//! `bulkmock proxy`: faults in front of a real Bulk Data server. Flags, bind,
//! Ctrl-C and the banner; the proxy itself is `bulkmock_server::proxy`.

use std::path::PathBuf;

use bulkmock_server::ServerConfig;
use bulkmock_server::proxy::{self, ProxyConfig};
use bulkmock_server::tls::{self, TlsIdentity};
use clap::Args;

/// Flags of `bulkmock proxy`.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// The upstream's FHIR base URL (http or https), e.g. https://ehr.example/fhir/R4.
    #[arg(long, env = "BULKMOCK_UPSTREAM")]
    upstream: String,
    /// Trust this CA certificate (PEM) for an https upstream, besides the system's roots; repeatable.
    #[arg(long = "upstream-ca-cert", env = "BULKMOCK_UPSTREAM_CA_CERT", value_delimiter = ',')]
    upstream_ca_cert: Vec<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "BULKMOCK_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port, printed in the banner).
    #[arg(long, env = "BULKMOCK_PORT", default_value_t = 8081)]
    port: u16,
    /// Serve HTTPS with a certificate from the local CA in --state-dir (as `serve --tls`).
    #[arg(long, env = "BULKMOCK_TLS")]
    tls: bool,
    /// Serve HTTPS with this certificate chain (PEM) instead of the local CA's.
    #[arg(long, env = "BULKMOCK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "BULKMOCK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the local CA of --tls lives.
    #[arg(long, env = "BULKMOCK_STATE_DIR", default_value = ".bulkmock")]
    state_dir: PathBuf,
    /// Fault plan (TOML or JSON, as `serve --faults`); kinds that need the synthetic server are refused.
    #[arg(long, env = "BULKMOCK_FAULTS")]
    faults: Option<PathBuf>,
    /// Seed of probabilistic faults.
    #[arg(long, env = "BULKMOCK_SEED", default_value_t = 42)]
    seed: u64,
    /// Write every exchange to this file as NDJSON (tokens as fingerprints).
    #[arg(long, env = "BULKMOCK_TRANSCRIPT")]
    transcript: Option<PathBuf>,
    /// Write what the upstream served (manifests, every file's full SHA-256) to this file, for `bulkmock judge --proxy-record`.
    #[arg(long, env = "BULKMOCK_RECORD")]
    record: Option<PathBuf>,
    #[command(flatten)]
    admin: crate::serve::AdminArgs,
    /// On Ctrl-C or SIGTERM: stop accepting, let requests in flight finish this long, then cut them.
    #[arg(long, env = "BULKMOCK_SHUTDOWN_GRACE", default_value = "10s", value_parser = crate::serve::parse_duration)]
    shutdown_grace: std::time::Duration,
}

fn tls_identity(args: &ProxyArgs) -> Result<Option<(TlsIdentity, String)>, String> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let identity = TlsIdentity::load(cert, key).map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
        return Ok(Some((identity, format!("  TLS:        certificate {}", cert.display()))));
    }
    if !args.tls {
        return Ok(None);
    }
    let hosts = tls::ca::local_hosts([args.host.as_str()]);
    let stored = tls::store::load_or_create(&args.state_dir, &hosts).map_err(|e| format!("--tls: {e}"))?;
    Ok(Some((stored.identity, format!("  TLS:        CA {} (trust it in the client)", stored.ca_path.display()))))
}

/// Runs the proxy until Ctrl-C or SIGTERM.
pub fn run(args: ProxyArgs) -> Result<(), String> {
    let mut ca_certs = Vec::new();
    for path in &args.upstream_ca_cert {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("--upstream-ca-cert {}: {e}", path.display()))?;
        bulkmock_server::auth::jwks::check_roots(
            std::slice::from_ref(&pem),
            &format!("--upstream-ca-cert {}", path.display()),
        )?;
        ca_certs.push(pem);
    }
    let faults = match &args.faults {
        Some(path) => bulkmock_server::faults::file::load(path)?,
        None => Default::default(),
    };
    if let Err(e) = proxy::support::check_plan(&faults) {
        let file = args.faults.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        return Err(format!("--faults {file}: {e}"));
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let tls = tls_identity(&args)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = ServerConfig {
            seed: args.seed,
            faults,
            transcript_file: args.transcript.clone(),
            admin: args.admin.config(),
            tls: tls.as_ref().map(|(identity, _)| identity.clone()),
            dashboard: !args.admin.no_dashboard,
            ..ServerConfig::default()
        };
        let proxy_config = ProxyConfig {
            upstream: args.upstream.clone(),
            upstream_ca_certs: ca_certs,
            record_file: args.record.clone(),
        };
        let state = proxy::state(config, &format!("{scheme}://{addr}"), &proxy_config)?;
        let upstream = state.proxy.as_ref().map(|u| u.base.clone()).unwrap_or_default();
        println!("bulkmock proxy on {scheme}://{addr}");
        println!("  FHIR base:  {}", state.fhir_base);
        println!("  upstream:   {upstream}");
        if let Some((_, line)) = &tls {
            println!("{line}");
        }
        println!("  auth:       the upstream's (discovery's token endpoint is left on the upstream)");
        let rules = state.faults.list().len();
        if rules > 0 {
            println!(
                "  faults:     {rules} rule(s) from {}",
                args.faults.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
        if let Some(path) = &args.record {
            println!("  record:     {}", path.display());
        }
        if args.admin.admin {
            println!("  admin:      {}/_admin/faults, /_admin/transcript, /_admin/reset", state.origin());
        }
        // No live checks here: no token request passes a proxy; judge with `bulkmock judge --proxy-record`.
        if let Some(line) = crate::serve::live_checks::banner_line(&state) {
            println!("{line}");
        }
        println!("Press Ctrl-C to stop.");
        let grace = args.shutdown_grace;
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = proxy::serve(listener, state, async move {
            crate::serve::stop_signal(grace).await;
            let _ = stopping.send(());
        });
        // Downloads in flight get the grace, then the runtime's shutdown cuts them.
        let grace_over = async move {
            match stopped.await {
                Ok(()) => tokio::time::sleep(grace).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            served = served => served.map_err(|e| e.to_string()),
            () = grace_over => Ok(()),
        }
    })
}
