//! `bulkmock scenarios list|check|checks|coverage|export`: look at scenario
//! files without running them; write the built-in suite out. And the suite
//! every command that reads scenarios takes: paths, `./scenarios`, or the
//! built-in one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bulkmock_harness::suite::{self, ScenarioSuite, SuiteSource};
use bulkmock_harness::{checks, scenario};
use clap::{Args, Subcommand};

/// The scenarios to use: paths, or `--suite`; neither: `./scenarios` when it
/// is a folder, else the suite built into bulkmock.
#[derive(Args, Debug, Default)]
pub struct SuiteArgs {
    /// Scenario files or folders (searched recursively for *.toml). None:
    /// ./scenarios when there is one, else the built-in suite.
    pub paths: Vec<PathBuf>,
    /// `builtin`: the suite compiled into bulkmock, whatever ./scenarios holds;
    /// any other value: a scenario file or folder, as if given as a path.
    #[arg(long, value_name = "builtin|PATH")]
    pub suite: Option<String>,
}

impl SuiteArgs {
    /// Loads the suite; the text says which one and why (for the terminal).
    pub fn load(&self) -> Result<(ScenarioSuite, String), String> {
        let paths: Vec<PathBuf> = match self.suite.as_deref() {
            Some("builtin") if !self.paths.is_empty() => {
                return Err("--suite builtin takes no paths: give the built-in suite or paths, not both".into());
            }
            Some("builtin") => return Ok((suite::builtin(), describe(&SuiteSource::Builtin, None))),
            Some(path) => std::iter::once(PathBuf::from(path)).chain(self.paths.iter().cloned()).collect(),
            None if !self.paths.is_empty() => self.paths.clone(),
            None if Path::new("scenarios").is_dir() => {
                let loaded = suite::from_paths(&[PathBuf::from("scenarios")]).map_err(|e| {
                    format!(
                        "{e}\n(./scenarios is read when no paths are given; --suite builtin uses the built-in suite)"
                    )
                })?;
                let why = "./scenarios found here; --suite builtin for the built-in suite";
                return Ok((loaded, describe(&SuiteSource::Paths(vec!["scenarios".into()]), Some(why))));
            }
            None => return Ok((suite::builtin(), describe(&SuiteSource::Builtin, Some("no ./scenarios here")))),
        };
        let loaded = suite::from_paths(&paths).map_err(|e| e.to_string())?;
        let text = describe(loaded.source(), None);
        Ok((loaded, text))
    }

    /// The suite as a re-run command names it: `--suite builtin`, or the paths.
    pub fn rerun_args(suite: &ScenarioSuite) -> Vec<String> {
        match suite.source() {
            SuiteSource::Builtin => vec!["--suite builtin".into()],
            SuiteSource::Paths(paths) => paths.iter().map(|p| p.display().to_string()).collect(),
        }
    }
}

/// `suite built-in (bulkmock 0.1.0, no ./scenarios here)`, `suite scenarios`, ...: which and why.
fn describe(source: &SuiteSource, why: Option<&str>) -> String {
    match (source, why) {
        (SuiteSource::Builtin, Some(why)) => format!("suite built-in (bulkmock {}, {why})", env!("CARGO_PKG_VERSION")),
        (_, Some(why)) => format!("suite {source} ({why})"),
        (_, None) => format!("suite {source}"),
    }
}

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
        #[command(flatten)]
        suite: SuiteArgs,
    },
    /// Validate files without running them (exit 2 on the first bad file, naming file, line and field).
    Check {
        #[command(flatten)]
        suite: SuiteArgs,
    },
    /// Every named check: id, level, requirement IDs, whether it always runs.
    Checks,
    /// The coverage table: requirement ID -> scenarios -> checks, and requirements without a scenario.
    Coverage {
        #[command(flatten)]
        suite: SuiteArgs,
        /// Write the table to this file (else standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compare with --out instead of writing; exit 1 when it is stale.
        #[arg(long, requires = "out")]
        check: bool,
    },
    /// Write the built-in suite (every file of the scenarios/ folder bulkmock
    /// was built from) into DIR, for editing; then `bulkmock run DIR`.
    Export {
        /// The folder to write into (created when missing).
        dir: PathBuf,
        /// Overwrite files of the suite that exist in DIR already (else nothing is written).
        #[arg(long)]
        force: bool,
    },
}

/// Runs the subcommand.
pub fn run(args: ScenariosArgs) -> ExitCode {
    let load = |suite: &SuiteArgs| -> Result<ScenarioSuite, ExitCode> {
        let (loaded, text) = suite.load().map_err(fail)?;
        eprintln!("bulkmock scenarios: {text}");
        Ok(loaded)
    };
    match args.command {
        ScenariosCommand::List { suite } => match load(&suite) {
            Ok(loaded) => {
                let files = loaded.files();
                for f in files {
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
                println!("{} scenarios, {} cases", files.len(), loaded.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        ScenariosCommand::Check { suite } => match load(&suite) {
            Ok(loaded) => {
                println!("{} scenarios, {} cases: all valid", loaded.files().len(), loaded.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        ScenariosCommand::Coverage { suite, out, check } => match load(&suite) {
            Ok(loaded) => coverage(loaded.files(), out, check),
            Err(code) => code,
        },
        ScenariosCommand::Export { dir, force } => export(&dir, force),
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

/// `scenarios export DIR`: every built-in file, or nothing (exit 2) when one exists without --force.
fn export(dir: &Path, force: bool) -> ExitCode {
    match suite::export_builtin(dir, force) {
        Ok(written) => {
            let builtin = suite::builtin();
            println!(
                "wrote {} files of the built-in suite (bulkmock {}: {} scenarios, {} cases, {}) to {}",
                written.len(),
                env!("CARGO_PKG_VERSION"),
                builtin.files().len(),
                builtin.len(),
                builtin.identity().digest,
                dir.display()
            );
            println!("run them with: bulkmock run {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e @ suite::ExportError::Exists(_)) => {
            eprintln!("bulkmock scenarios export: {}: {e}; nothing written (--force overwrites them)", dir.display());
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("bulkmock scenarios export: {e}; nothing written");
            ExitCode::from(2)
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

fn fail(e: String) -> ExitCode {
    eprintln!("bulkmock scenarios: {e}");
    ExitCode::from(2)
}
