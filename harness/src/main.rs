//! `bulkmock`: serve the mock FHIR Bulk Data server, run the reference client,
//! run clients against scenarios. A thin entry point over the libraries.

mod export;
mod judge;
mod keys;
mod progress;
mod report_cli;
mod run;
mod scenarios;
mod serve;

use clap::{Parser, Subcommand};

/// bulkmock: the test bench for FHIR Bulk Data clients.
#[derive(Parser)]
#[command(name = "bulkmock", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// List or validate scenario files; list the checks.
    Scenarios(scenarios::ScenariosArgs),
    /// Judge a client the harness did not launch, from `serve --scenario`'s transcript and its output folder.
    Judge(Box<judge::JudgeArgs>),
    /// Merge shard results into one report (JSON, JUnit, Markdown, HTML).
    Report(report_cli::ReportArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BULKMOCK_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Keys(args) => keys::run(args),
        Command::Export(args) => return export::run(*args),
        Command::Run(args) => return run::run(*args),
        Command::Scenarios(args) => return scenarios::run(args),
        Command::Judge(args) => return judge::run(*args),
        Command::Report(args) => return report_cli::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkmock: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
