//! `bulkmock`: serve the mock FHIR Bulk Data server, run the reference client,
//! run clients against scenarios. A thin entry point over the libraries.

mod export;
mod judge;
mod keys;
mod progress;
mod proxy;
mod report_cli;
mod run;
mod scenarios;
mod serve;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// bulkmock: the test bench for FHIR Bulk Data clients.
#[derive(Parser)]
#[command(name = "bulkmock", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `cmd` with the environment fallback of every flag whose variable is set
/// but empty removed: an empty `BULKMOCK_*` counts as unset. (`bulkmock run`
/// exports every template variable, the empty ones too, to the clients it
/// runs, which may be `bulkmock export`.)
fn without_empty_env(mut cmd: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.get_env().and_then(std::env::var_os).is_some_and(|v| v.is_empty()))
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        cmd = cmd.mut_arg(id, |a| a.env(None));
    }
    let subcommands: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, without_empty_env);
    }
    cmd
}

#[derive(Subcommand)]
enum Command {
    /// Run the mock Data Provider until Ctrl-C.
    Serve(Box<serve::ServeArgs>),
    /// Write a new client key pair (private PEM and JWK, public JWKS).
    Keys(keys::KeysArgs),
    /// Run a Bulk Data export with the reference client.
    Export(Box<export::ExportArgs>),
    /// Run a client against scenarios and judge it against the requirement IDs.
    Run(Box<run::RunArgs>),
    /// List, validate or export scenarios (files, or the suite built into bulkmock); list the checks.
    Scenarios(scenarios::ScenariosArgs),
    /// Judge a client the harness did not launch, from `serve --scenario`'s transcript and its output folder.
    Judge(Box<judge::JudgeArgs>),
    /// Merge shard results into one report (JSON, JUnit, Markdown, HTML).
    Report(report_cli::ReportArgs),
    /// Put faults into the traffic of a real Bulk Data server: forward to --upstream, with a fault plan.
    Proxy(Box<proxy::ProxyArgs>),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BULKMOCK_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let matches = without_empty_env(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Keys(args) => keys::run(args),
        Command::Export(args) => return export::run(*args),
        Command::Run(args) => return run::run(*args),
        Command::Scenarios(args) => return scenarios::run(args),
        Command::Judge(args) => return judge::run(*args),
        Command::Report(args) => return report_cli::run(args),
        Command::Proxy(args) => proxy::run(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkmock: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
