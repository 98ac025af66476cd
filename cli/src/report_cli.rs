//! `bulkmock report merge`: N shard results (JSON) become one report; and the
//! report files every command that judges can write (`--json`, `--junit`,
//! `--markdown`, `--html`), all rendered from the `RunReport` alone.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkmock_harness::report::{RunReport, html, junit, markdown, merge, terminal};
use clap::{Args, Subcommand};

/// Renders a report file from the result.
type Render = fn(&RunReport) -> String;

/// The report files to write (each optional).
#[derive(Args, Debug, Default)]
pub struct Outputs {
    /// Write the whole result as JSON to this file (the source every other report renders from).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write JUnit XML to this file (one test suite per scenario area, one test case per case).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a Markdown conformance report to this file (by requirement, then by scenario).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write a self-contained HTML report to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

impl Outputs {
    /// Writes every requested report; the error names the flag and file.
    pub fn write(&self, report: &RunReport) -> Result<(), String> {
        let renderers: [(&str, &Option<PathBuf>, Render); 4] = [
            ("--json", &self.json, |r| serde_json::to_string_pretty(r).expect("a report serialises") + "\n"),
            ("--junit", &self.junit, junit::render),
            ("--markdown", &self.markdown, markdown::render),
            ("--html", &self.html, html::render),
        ];
        for (flag, path, render) in renderers {
            if let Some(path) = path {
                std::fs::write(path, render(report)).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// Flags of `bulkmock report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// Merge the JSON results of the shards of one run (`run --shard K/N --json`) into one report.
    Merge(MergeArgs),
}

/// Flags of `bulkmock report merge`.
#[derive(Args, Debug)]
struct MergeArgs {
    /// The shard results (`bulkmock run --json` files).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    outputs: Outputs,
    /// Merge even when cases of the suite are missing (a shard did not report).
    #[arg(long)]
    allow_missing: bool,
    /// Fail on SHOULD failures too (exit code 1 on any warn).
    #[arg(long)]
    strict: bool,
}

/// Runs `bulkmock report ...`: exit 0 when the merged run passes, 1 when it
/// does not (as `bulkmock run`), 2 when the inputs cannot be merged.
pub fn run(args: ReportArgs) -> ExitCode {
    let ReportCommand::Merge(args) = args.command;
    match merge_files(&args) {
        Ok(report) => {
            print!("{}", terminal::summary(&report));
            if report.passed(args.strict) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("bulkmock report merge: {e}");
            ExitCode::from(2)
        }
    }
}

fn merge_files(args: &MergeArgs) -> Result<RunReport, String> {
    let mut results = Vec::with_capacity(args.inputs.len());
    for path in &args.inputs {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        let report: RunReport =
            serde_json::from_str(&text).map_err(|e| format!("{name}: not a `bulkmock run --json` result: {e}"))?;
        results.push((name, report));
    }
    let report = merge::merge(results, args.allow_missing).map_err(|e| e.to_string())?;
    args.outputs.write(&report)?;
    Ok(report)
}
