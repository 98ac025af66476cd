//! `bulkmock judge`: judge a client the harness could not launch, from the
//! transcript and judge file of `bulkmock serve --scenario` and the client's
//! output folder; the same verdicts and JSON as `bulkmock run`. With
//! `--proxy-record`, an export that went through `bulkmock proxy`: as a
//! scenario's case (`--scenario`), or as the record shows it (no scenario).

use std::path::PathBuf;
use std::process::ExitCode;

use bulkmock_harness::checks::JobFacts;
use bulkmock_harness::report::{RunReport, terminal};
use bulkmock_harness::runner::RunOptions;
use bulkmock_harness::runner::judge::{self, CaseEvidence};
use bulkmock_harness::runner::record::{self, JudgeFile};
use bulkmock_harness::runner::{proxied, recorded};
use bulkmock_harness::scenario::Case;
use bulkmock_harness::suite;
use clap::Args;

/// Flags of `bulkmock judge`.
#[derive(Args, Debug)]
pub struct JudgeArgs {
    /// The scenario file the case was served from (`bulkmock serve --scenario`):
    /// a path, or `builtin:<path>` for one of the built-in suite (`builtin:happy/patient-export`).
    /// Optional with `--proxy-record`: without it the export is judged as the record shows it.
    #[arg(long, required_unless_present = "proxy_record")]
    scenario: Option<PathBuf>,
    /// The case id, or its matrix part (`form=retry_after_s`), when the scenario has a matrix.
    #[arg(long)]
    case: Option<String>,
    /// The transcript `bulkmock serve --scenario` wrote (NDJSON of exchanges); with
    /// `--proxy-record`, the proxy's (default: the one the record names).
    #[arg(long, required_unless_present = "proxy_record")]
    transcript: Option<PathBuf>,
    /// The judge file `bulkmock serve --scenario` wrote (default: next to the transcript, `*.judge.json`).
    #[arg(long)]
    judge_file: Option<PathBuf>,
    /// Judge an export that went through `bulkmock proxy`: the record it wrote
    /// (`--record`), what the upstream really served. `--transcript` is then the
    /// proxy's (default: the one the record names); no judge file is read.
    /// Without `--scenario`, the export is judged as the record shows it: its
    /// kick-off, the proxy's faults, a complete export of what the upstream served.
    #[arg(long, conflicts_with = "judge_file")]
    proxy_record: Option<PathBuf>,
    /// The client's output folder.
    #[arg(long)]
    out: PathBuf,
    /// What the client reported: 0 when it says the export succeeded, another number when it gave up.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    exit_code: i32,
    /// The client's log, whose last lines go into the report.
    #[arg(long)]
    stderr: Option<PathBuf>,
    /// The client's name in the report.
    #[arg(long, default_value = "external")]
    client_name: String,
    /// The reports to write (a run report with one case): `--json`, `--junit`, `--markdown`, `--html`.
    #[command(flatten)]
    outputs: crate::report_cli::Outputs,
    /// Fail on SHOULD failures too (exit code 1 on a warn).
    #[arg(long)]
    strict: bool,
    /// Show every check, passed and skipped ones too.
    #[arg(long, short)]
    verbose: bool,
}

/// Judges the case; exit 0 only when no MUST check failed (`--strict`: no SHOULD either), 2 for bad input.
pub fn run(args: JudgeArgs) -> ExitCode {
    match judge(&args) {
        Ok(report) => {
            print!("{}", terminal::case_lines(&report.cases[0], args.verbose));
            print!("{}", terminal::summary(&report));
            if let Err(e) = args.outputs.write(&report) {
                eprintln!("bulkmock judge: {e}");
                return ExitCode::from(2);
            }
            if report.passed(args.strict) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("bulkmock judge: {e}");
            ExitCode::from(2)
        }
    }
}

fn judge(args: &JudgeArgs) -> Result<RunReport, String> {
    let (scenario, record) = (args.scenario.as_ref(), args.proxy_record.as_ref());
    let Some(scenario) = scenario else {
        let record = record.ok_or("--scenario is required (or --proxy-record FILE, to judge a proxied export)")?;
        if args.case.is_some() {
            return Err("--case chooses a case of --scenario, which is not given".into());
        }
        return judge_proxied(args, None, record);
    };
    let files = suite::load_scenario(scenario).map_err(|e| e.to_string())?;
    let case = judge::pick_case(files.into_iter().flat_map(|f| f.cases).collect(), args.case.as_deref())?;
    judge::single_run(&case)?;
    if let Some(record) = record {
        return judge_proxied(args, Some(&case), record);
    }
    let transcript = args.transcript.as_ref().ok_or("--transcript is required with --scenario")?;
    let judge_path = args.judge_file.clone().unwrap_or_else(|| record::judge_path(transcript));
    let file = JudgeFile::read(&judge_path)?;
    if file.case != case.id {
        return Err(format!(
            "{} was written for case {:?}, not {:?} (choose it with --case)",
            judge_path.display(),
            file.case,
            case.id
        ));
    }
    if !args.out.is_dir() {
        return Err(format!("--out {}: not a folder", args.out.display()));
    }
    let exchanges = record::read_transcript(transcript)?;
    let stderr = read_stderr(args)?;
    let run = judge::run_from_transcript(&case, &exchanges, args.exit_code, stderr, RunOptions::default().grace);
    let rerun = format!(
        "bulkmock serve --scenario {} --case '{}' --seed {}  (then: bulkmock judge ...)",
        scenario.display(),
        case.id,
        file.seed
    );
    let evidence = CaseEvidence {
        case: &case,
        exchanges,
        run,
        // A judge file of an older version does not say what the mock's manifest
        // said of the token: the case's authorization setting decided it.
        job: file.job.clone().map(|job| JobFacts {
            requires_access_token: job.requires_access_token.or(Some(case.scenario.server.auth)),
            ..job
        }),
        expected: file.expected_lines(),
        out_dir: &args.out,
        fhir_base: &file.fhir_base,
        token_url: &file.token_url,
        client_id: &file.client_id,
        incremental: None,
    };
    let mut result = judge::judge(evidence, rerun, None);
    // No profile here: a request other than the case's is not applicable, as in `run`.
    bulkmock_harness::runner::not_the_request_asked(&mut result);
    Ok(one_case_report(args, &case, file.seed, result))
}

/// The client's log (`--stderr`), or nothing.
fn read_stderr(args: &JudgeArgs) -> Result<String, String> {
    match &args.stderr {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("--stderr {}: {e}", path.display())),
        None => Ok(String::new()),
    }
}

/// Judges an export that went through `bulkmock proxy`, from its transcript and
/// record: as `case` (a scenario's), or, without one, as the record shows it.
fn judge_proxied(args: &JudgeArgs, case: Option<&Case>, record: &std::path::Path) -> Result<RunReport, String> {
    let export = proxied::read(record).map_err(|e| format!("--proxy-record {e}"))?;
    if !export.unread.is_empty() {
        eprintln!(
            "bulkmock judge: {} file(s) of the manifest never passed the proxy whole; their lines are unknown: {}",
            export.unread.len(),
            export.unread.join(", ")
        );
    }
    if !args.out.is_dir() {
        return Err(format!("--out {}: not a folder", args.out.display()));
    }
    let transcript = match (&args.transcript, &export.transcript) {
        (Some(given), _) => given.clone(),
        (None, Some(named)) => named.clone(),
        (None, None) => {
            return Err(format!(
                "--proxy-record {}: the record names no transcript (the proxy ran without --transcript); pass \
                 --transcript FILE, the proxy's transcript",
                record.display()
            ));
        }
    };
    let exchanges = record::read_transcript(&transcript)?;
    let stderr = read_stderr(args)?;
    let bare = case.is_none().then(|| recorded::case_of(&export, record, &exchanges));
    let running = recorded::stopped_while_running(&exchanges);
    let case = case.or(bare.as_ref()).expect("a case or the record's");
    // A deadline written for the mock does not call a client that ended by itself a timeout.
    let run = judge::run_from_proxied_transcript(case, &exchanges, args.exit_code, stderr, RunOptions::default().grace);
    let timed_out = run.timed_out;
    let rerun = format!(
        "bulkmock proxy --upstream {} --seed {} --record ...  (then: bulkmock judge --proxy-record ...)",
        export.upstream, export.seed
    );
    let evidence = CaseEvidence {
        case,
        exchanges,
        run,
        job: export.job.clone(),
        expected: export.expected.clone(),
        out_dir: &args.out,
        fhir_base: &export.fhir_base,
        token_url: "",
        client_id: "",
        incremental: None,
    };
    let mut result = judge::judge(evidence, rerun, None);
    proxied::skip_token_endpoint(&mut result, timed_out);
    if bare.is_some() {
        recorded::finish(&mut result, &export, timed_out, running.as_deref());
        // No scenario, no suite: the report's one case is the record's export.
        let mut report = RunReport::new(export.seed, args.client_name.clone(), vec![result]);
        report.suite = None;
        return Ok(report);
    }
    bulkmock_harness::runner::not_the_request_asked(&mut result);
    Ok(one_case_report(args, case, export.seed, result))
}

/// The run report of one judged case, its suite named as `bulkmock run --filter <case>` would.
fn one_case_report(
    args: &JudgeArgs,
    case: &Case,
    seed: u64,
    result: bulkmock_harness::report::CaseResult,
) -> RunReport {
    let mut report = RunReport::new(seed, args.client_name.clone(), vec![result]);
    // The suite of a one-case run, as `bulkmock run --filter <case>` would name it.
    let mut identity = bulkmock_harness::report::Suite::of(std::slice::from_ref(case));
    let builtin = case.path.to_str().is_some_and(|p| p.starts_with(suite::BUILTIN_PREFIX));
    identity.source = Some(if builtin { "builtin" } else { "paths" }.to_string());
    if !builtin {
        identity.paths = args.scenario.iter().map(|p| p.display().to_string()).collect();
    }
    report.suite = Some(identity);
    report
}
