//! `bulkmock export`: run a Bulk Data export with the reference client.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bulkmock_client::{Client, ClientError, Credentials, ExportRequest, Policy, Summary};
use bulkmock_harness::adapter::builtin::{exit, exit_code, export_request};
use bulkmock_harness::scenario::{ClientSpec, LevelName};
use clap::Args;

use crate::progress;

/// Flags of `bulkmock export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The FHIR base URL.
    #[arg(long, env = "BULKMOCK_FHIR_URL")]
    fhir_url: String,
    /// The registered client id (omit for open servers).
    #[arg(long, env = "BULKMOCK_CLIENT_ID", requires = "key")]
    client_id: Option<String>,
    /// The client's private key: PKCS#8 PEM or a private JWK (JSON).
    #[arg(long, env = "BULKMOCK_KEY", requires = "client_id")]
    key: Option<PathBuf>,
    /// The key id for a PEM key; when not given, read from jwks.json or
    /// private.jwk.json next to the key, else the key's RFC 7638 thumbprint.
    #[arg(long, env = "BULKMOCK_KID")]
    kid: Option<String>,
    /// Scopes to ask for.
    #[arg(long, default_value = "system/*.rs")]
    scope: String,
    /// Export every patient's data (Patient/$export).
    #[arg(long, conflicts_with_all = ["system", "group"])]
    patient: bool,
    /// System-level export (the default).
    #[arg(long)]
    system: bool,
    /// Export a Group.
    #[arg(long)]
    group: Option<String>,
    /// Resource types (repeatable).
    #[arg(long = "type")]
    types: Vec<String>,
    /// Only resources changed after this instant.
    #[arg(long)]
    since: Option<String>,
    /// Only resources changed up to this instant.
    #[arg(long)]
    until: Option<String>,
    /// `_typeFilter` queries (repeatable).
    #[arg(long = "type-filter")]
    type_filters: Vec<String>,
    /// `_elements` (repeatable).
    #[arg(long = "elements")]
    elements: Vec<String>,
    /// Kick off with POST and a Parameters body.
    #[arg(long)]
    post: bool,
    /// Ask for a manifest in pages while the job runs (allowPartialManifests).
    #[arg(long)]
    partial_manifests: bool,
    /// Ask for `Prefer: separate-export-status`.
    #[arg(long)]
    separate_status: bool,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Do not ask for gzip file bodies.
    #[arg(long)]
    no_gzip: bool,
    /// Output folder (must not hold an earlier export, unless --incremental).
    #[arg(long)]
    out: PathBuf,
    /// Keep --out up to date: the first run exports everything into it; each later
    /// run exports what changed since the `transactionTime` of `--out/manifest.json`
    /// (`_since`, CLI-054) and applies it: resources added or replaced by id,
    /// deleted ones removed (CLI-087). For a Group, members that joined are
    /// exported with `patient` and members that left are removed (`members.json`).
    #[arg(long, conflicts_with_all = ["since", "status_url"])]
    incremental: bool,
    /// Resume an existing job: poll and download from this status URL instead of kicking off.
    #[arg(long, conflicts_with_all = ["patient", "group", "types", "since", "until", "type_filters", "elements", "post"])]
    status_url: Option<String>,
    /// Keep the job on the server afterwards (no DELETE).
    #[arg(long)]
    no_delete: bool,
    /// A JSON event log on stdout (one object per line, the summary last).
    #[arg(long)]
    json: bool,
    /// Trust this CA certificate (PEM) besides the system's roots, e.g. the
    /// local CA of `bulkmock serve --tls` (`.bulkmock/tls/ca.pem`).
    #[arg(long, env = "BULKMOCK_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

/// The key id next to a key file: `jwks.json` or `private.jwk.json`.
fn kid_beside(key: &Path) -> Option<String> {
    let dir = key.parent()?;
    for name in ["jwks.json", "private.jwk.json"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if let Some(kid) = v["keys"][0]["kid"].as_str().or_else(|| v["kid"].as_str()) {
            return Some(kid.to_string());
        }
    }
    None
}

/// Credentials from the flags: a private JWK file or a PEM file.
fn credentials(args: &ExportArgs) -> Result<Option<Credentials>, String> {
    let (Some(id), Some(key)) = (&args.client_id, &args.key) else { return Ok(None) };
    let bytes = std::fs::read(key).map_err(|e| format!("--key {}: {e}", key.display()))?;
    let credentials = if bytes.trim_ascii_start().starts_with(b"{") {
        let jwk: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("--key {}: not a JWK: {e}", key.display()))?;
        Credentials::from_jwk(id, &jwk, &args.scope)
    } else {
        let kid = match args.kid.clone().or_else(|| kid_beside(key)) {
            Some(kid) => kid,
            None => {
                // The same kid `bulkmock keys` and the demo client use; said on stderr,
                // so a JSON event log on stdout stays clean.
                let kid = Credentials::pem_thumbprint(&bytes).map_err(|e| format!("--key {}: {e}", key.display()))?;
                eprintln!("bulkmock export: kid {kid} (the RFC 7638 thumbprint of the public key; --kid to override)");
                kid
            }
        };
        Credentials::from_pem(id, &bytes, &kid, &args.scope)
    };
    credentials.map(Some).map_err(|e| format!("--key {}: {e}", key.display()))
}

/// The flags as a scenario's `[client]` request, mapped to the client's
/// request by the same function the harness uses.
fn request(args: &ExportArgs) -> ExportRequest {
    let level = match (&args.group, args.patient) {
        (Some(_), _) => LevelName::Group,
        (None, true) => LevelName::Patient,
        (None, false) => LevelName::System,
    };
    export_request(&ClientSpec {
        level,
        group: args.group.clone(),
        types: args.types.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        type_filters: args.type_filters.clone(),
        elements: args.elements.clone(),
        post: args.post,
        allow_partial_manifests: args.partial_manifests,
        separate_export_status: args.separate_status,
        ..ClientSpec::default()
    })
}

async fn export(
    args: &ExportArgs,
    credentials: Option<Credentials>,
    ca_cert: Option<Vec<u8>>,
) -> Result<Summary, ClientError> {
    let observer = if args.json {
        progress::json()
    } else if std::io::stderr().is_terminal() {
        progress::bars()
    } else {
        progress::plain()
    };
    let policy = Policy { delete_after: !args.no_delete, ..Policy::default() };
    let mut builder =
        Client::builder(&args.fhir_url).policy(policy).parallel(args.parallel).gzip(!args.no_gzip).observer(observer);
    if let Some(c) = credentials {
        builder = builder.credentials(c);
    }
    if let Some(pem) = ca_cert {
        builder = builder.ca_cert(pem);
    }
    let client = builder.build().await.map_err(|e| match (e, &args.ca_cert) {
        (ClientError::CaCert(reason), Some(path)) => {
            ClientError::CaCert(format!("--ca-cert {}: {reason}", path.display()))
        }
        (e, _) => e,
    })?;
    match &args.status_url {
        None if args.incremental => incremental_export(&client, args).await,
        None => client.export(&request(args), &args.out).await,
        Some(url) => {
            let job = client.job(url);
            let summary = job.download(&args.out).await?;
            if !args.no_delete {
                job.delete().await?;
            }
            Ok(summary)
        }
    }
}

/// `--incremental`: [`Client::update`]: a full export into an empty `--out`;
/// else an export with `_since` = the kept manifest's `transactionTime`,
/// applied to `--out` (for a Group, with joined members exported and departed
/// ones removed). A failed run leaves `--out` as it was.
async fn incremental_export(client: &Client, args: &ExportArgs) -> Result<Summary, ClientError> {
    let updated = client.update(&request(args), &args.out).await?;
    if let (Some(since), false) = (&updated.since, args.json) {
        eprintln!(
            "changes since {since} applied to {}: {} resources added or replaced, {} deleted{}",
            args.out.display(),
            updated.applied.upserted,
            updated.applied.deleted,
            if updated.joined.is_empty() && updated.left.is_empty() {
                String::new()
            } else {
                format!("; Group members: {} joined, {} left", updated.joined.len(), updated.left.len())
            }
        );
    }
    Ok(updated.summary)
}

/// Runs the export and prints the summary; the exit code says how it ended.
pub fn run(args: ExportArgs) -> ExitCode {
    let credentials = match credentials(&args) {
        Ok(c) => c,
        Err(message) => return fail(&args, exit::USAGE, "usage", &message),
    };
    let ca_cert = match &args.ca_cert {
        None => None,
        Some(path) => match std::fs::read(path) {
            Ok(pem) => Some(pem),
            Err(e) => return fail(&args, exit::USAGE, "usage", &format!("--ca-cert {}: {e}", path.display())),
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(&args, exit::OUTPUT, "runtime", &e.to_string()),
    };
    match runtime.block_on(export(&args, credentials, ca_cert)) {
        Ok(summary) => {
            print_summary(&args, &summary);
            ExitCode::from(exit::OK)
        }
        Err(e @ ClientError::Tls { .. }) if args.ca_cert.is_none() => {
            let message = format!("{e} (to trust a local CA such as bulkmock serve --tls's, pass --ca-cert FILE)");
            fail(&args, exit_code(&e), kind(&e), &message)
        }
        Err(e) => fail(&args, exit_code(&e), kind(&e), &e.to_string()),
    }
}

fn kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Outcome { .. } => "outcome",
        ClientError::OAuth { .. } => "oauth",
        ClientError::ScopeNotGranted { .. } => "scope",
        ClientError::Unparseable { .. } => "unparseable",
        ClientError::Protocol(_) => "protocol",
        ClientError::Transport { .. } => "transport",
        ClientError::Tls { .. } => "tls",
        ClientError::CaCert(_) => "ca_cert",
        ClientError::Integrity { .. } => "integrity",
        ClientError::Key(_) => "key",
        ClientError::Io { .. } => "io",
        ClientError::Exhausted { .. } => "exhausted",
    }
}

fn fail(args: &ExportArgs, code: u8, kind: &str, message: &str) -> ExitCode {
    if args.json {
        println!("{}", serde_json::json!({"event": "error", "kind": kind, "message": message, "exit_code": code}));
    } else {
        eprintln!("bulkmock export: {message}");
    }
    ExitCode::from(code)
}

fn print_summary(args: &ExportArgs, summary: &Summary) {
    if args.json {
        let mut value = serde_json::to_value(summary).unwrap_or_default();
        value["event"] = "summary".into();
        value["out"] = args.out.display().to_string().into();
        println!("{value}");
        return;
    }
    for (ty, n) in &summary.resources {
        println!("{n:>10}  {ty}");
    }
    println!(
        "{} resources in {} files, {} deleted, {} errors, {} bytes, {} retries -> {}",
        summary.total_resources(),
        summary.files,
        summary.deleted,
        summary.errors,
        summary.bytes,
        summary.retries,
        args.out.display()
    );
    for issue in &summary.error_issues {
        println!("  server reported: {issue}");
    }
}
