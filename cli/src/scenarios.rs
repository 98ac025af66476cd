//! `bulkmock scenarios list|check|checks|coverage`: look at scenario files without running them.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkmock_harness::{checks, scenario};
use clap::{Args, Subcommand};

/// Flags of `bulkmock scenarios`.
#[derive(Args, Debug)]
pub struct ScenariosArgs {
    #[command(subcommand)]
    command: ScenariosCommand,
}

#[derive(Subcommand, Debug)]
enum ScenariosCommand {
    /// Ids, titles, requirement IDs and number of matrix cases.
    List {
        /// Scenario files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
    /// Validate files without running them (exit 2 on the first bad file, naming file, line and field).
    Check {
        /// Scenario files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
    /// Every named check: id, level, requirement IDs, whether it always runs.
    Checks,
    /// The coverage table: requirement ID -> scenarios -> checks, and requirements without a scenario.
    Coverage {
        /// Scenario files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Write the table to this file (else standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compare with --out instead of writing; exit 1 when it is stale.
        #[arg(long, requires = "out")]
        check: bool,
    },
}

/// Runs the subcommand.
pub fn run(args: ScenariosArgs) -> ExitCode {
    match args.command {
        ScenariosCommand::List { paths } => match scenario::load_paths(&paths) {
            Ok(files) => {
                let cases: usize = files.iter().map(|f| f.cases.len()).sum();
                for f in &files {
                    let s = &f.cases[0].scenario;
                    println!(
                        "{:<44} {:>3} case{}  [{}]",
                        f.id,
                        f.cases.len(),
                        if f.cases.len() == 1 { " " } else { "s" },
                        s.requirements.join(", ")
                    );
                    println!("    {}", s.title);
                }
                println!("{} scenarios, {cases} cases", files.len());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        ScenariosCommand::Check { paths } => match scenario::load_paths(&paths) {
            Ok(files) => {
                let cases: usize = files.iter().map(|f| f.cases.len()).sum();
                println!("{} scenarios, {cases} cases: all valid", files.len());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        ScenariosCommand::Coverage { paths, out, check } => match scenario::load_paths(&paths) {
            Ok(files) => coverage(&files, out, check),
            Err(e) => fail(e),
        },
        ScenariosCommand::Checks => {
            for c in checks::all() {
                println!(
                    "{:<34} {:<6} {:<7} [{}]  {}",
                    c.id,
                    c.level.as_str(),
                    if c.always { "always" } else { "opt-in" },
                    c.requirements.join(", "),
                    c.title
                );
            }
            ExitCode::SUCCESS
        }
    }
}

fn coverage(files: &[scenario::ScenarioFile], out: Option<PathBuf>, check: bool) -> ExitCode {
    let table = bulkmock_harness::coverage::render(files);
    let Some(path) = out else {
        print!("{table}");
        return ExitCode::SUCCESS;
    };
    if check {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == table {
            println!("{} is up to date", path.display());
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "bulkmock scenarios: {} is stale; run `bulkmock scenarios coverage --out {}`",
            path.display(),
            path.display()
        );
        return ExitCode::FAILURE;
    }
    match std::fs::write(&path, table) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkmock scenarios: {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn fail(e: scenario::ScenarioError) -> ExitCode {
    eprintln!("bulkmock scenarios: {e}");
    ExitCode::from(2)
}
