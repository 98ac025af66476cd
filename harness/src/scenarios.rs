//! `bulkmock scenarios list|check|checks`: look at scenario files without running them.

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

fn fail(e: scenario::ScenarioError) -> ExitCode {
    eprintln!("bulkmock scenarios: {e}");
    ExitCode::from(2)
}
