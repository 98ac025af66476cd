//! A small test harness that speaks libtest's command line (`cargo test`,
//! `cargo nextest`): filters, `--exact`, `--skip`, `--list` (`--format terse`),
//! `--ignored`, with libtest's output and exit code. Written here so the
//! testing API compiles no argument parser (libtest-mimic brings clap).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// The test binary's command line, as `cargo test -- ...` passes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arguments {
    /// Name filters: a trial runs when its name contains one (equals one with `--exact`).
    pub filters: Vec<String>,
    /// Filters match whole names.
    pub exact: bool,
    /// Trials whose names contain one of these (equal one with `--exact`) are skipped.
    pub skip: Vec<String>,
    /// List the trials instead of running them.
    pub list: bool,
    /// Run (or list) only ignored trials: there are none, so nothing.
    pub ignored: bool,
    /// `--format terse` (what `cargo nextest` asks when listing).
    pub terse: bool,
    /// `-q`/`--quiet`: one character per trial.
    pub quiet: bool,
}

impl Arguments {
    /// The arguments of this process (the first, the program, left out).
    ///
    /// # Panics
    ///
    /// On a flag libtest does not know, or one missing its value (exit code 101 follows).
    pub fn from_args() -> Arguments {
        Arguments::parse(std::env::args().skip(1)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Parses libtest's flags; flags that change nothing here (`--nocapture`,
    /// `--test-threads N`, `--color C`, ...) are accepted and ignored.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Arguments, String> {
        const VALUED: &[&str] = &["--test-threads", "--color", "--logfile", "-Z", "--shuffle-seed"];
        const PLAIN: &[&str] = &[
            "--nocapture",
            "--no-capture",
            "--show-output",
            "--include-ignored",
            "--test",
            "--bench",
            "--report-time",
            "--ensure-time",
            "--shuffle",
            "--force-run-in-process",
        ];
        let mut out = Arguments::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| inline.clone().or_else(|| args.next()).ok_or(format!("{name} needs a value"));
            match flag.as_str() {
                "--exact" => out.exact = true,
                "--list" => out.list = true,
                "--ignored" => out.ignored = true,
                "-q" | "--quiet" => out.quiet = true,
                "--skip" => out.skip.push(value("--skip")?),
                "--format" => out.terse = value("--format")? == "terse",
                f if VALUED.contains(&f) => drop(value(f)?),
                f if PLAIN.contains(&f) => {}
                f if f.starts_with('-') => return Err(format!("unknown flag {f} (libtest's flags are accepted)")),
                _ => out.filters.push(arg),
            }
        }
        Ok(out)
    }

    /// Whether the filters and `--skip` select the trial `name`.
    pub fn wants(&self, name: &str) -> bool {
        let hit = |f: &String| if self.exact { name == f } else { name.contains(f.as_str()) };
        !self.ignored && (self.filters.is_empty() || self.filters.iter().any(hit)) && !self.skip.iter().any(hit)
    }
}

/// One named test: `Ok` passes, `Err(message)` (or a panic) fails.
pub struct Trial {
    name: String,
    test: Box<dyn FnOnce() -> Result<(), String> + Send>,
}

impl Trial {
    /// A trial named `name`.
    pub fn test(name: impl Into<String>, test: impl FnOnce() -> Result<(), String> + Send + 'static) -> Trial {
        Trial { name: name.into(), test: Box::new(test) }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trial").field("name", &self.name).finish_non_exhaustive()
    }
}

/// What a run of trials came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conclusion {
    /// Trials that passed.
    pub passed: usize,
    /// The names of the trials that failed.
    pub failed: Vec<String>,
    /// Trials the filters left out.
    pub filtered_out: usize,
}

impl Conclusion {
    /// Whether a trial failed.
    pub fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Ends the process as libtest does: exit code 101 when a trial failed, else 0.
    pub fn exit(self) -> ! {
        std::process::exit(if self.has_failed() { 101 } else { 0 })
    }
}

/// Runs (or lists) the trials `args` selects, one after the other, printing
/// libtest's lines.
pub fn run(args: &Arguments, trials: Vec<Trial>) -> Conclusion {
    let total = trials.len();
    let trials: Vec<Trial> = trials.into_iter().filter(|t| args.wants(&t.name)).collect();
    let mut conclusion = Conclusion { filtered_out: total - trials.len(), ..Conclusion::default() };
    if args.list {
        for t in &trials {
            println!("{}: test", t.name);
        }
        if !args.terse {
            println!("\n{} tests, 0 benchmarks", trials.len());
        }
        return conclusion;
    }
    let started = Instant::now();
    println!("\nrunning {} tests", trials.len());
    let mut failures: Vec<(String, String)> = Vec::new();
    for trial in trials {
        let outcome = match catch_unwind(AssertUnwindSafe(trial.test)) {
            Ok(result) => result,
            Err(panic) => Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the trial panicked".into())),
        };
        let ok = outcome.is_ok();
        match (args.quiet, ok) {
            (true, true) => print!("."),
            (true, false) => print!("F"),
            (false, true) => println!("test {} ... ok", trial.name),
            (false, false) => println!("test {} ... FAILED", trial.name),
        }
        match outcome {
            Ok(()) => conclusion.passed += 1,
            Err(message) => failures.push((trial.name, message)),
        }
    }
    if args.quiet {
        println!();
    }
    if !failures.is_empty() {
        println!("\nfailures:\n");
        for (name, message) in &failures {
            println!("---- {name} ----\n{}\n", message.trim_end());
        }
        println!("failures:");
        for (name, _) in &failures {
            println!("    {name}");
        }
    }
    conclusion.failed = failures.into_iter().map(|(n, _)| n).collect();
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if conclusion.has_failed() { "FAILED" } else { "ok" },
        conclusion.passed,
        conclusion.failed.len(),
        conclusion.filtered_out,
        started.elapsed().as_secs_f64()
    );
    conclusion
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Arguments {
        Arguments::parse(args.iter().map(|s| s.to_string())).unwrap()
    }

    #[test]
    fn libtest_flags_parse_and_select() {
        let a = parse(&["--exact", "auth/x", "--nocapture", "--test-threads", "2", "--skip=y"]);
        assert_eq!(
            (a.filters.as_slice(), a.exact, a.skip.as_slice()),
            (&["auth/x".to_string()][..], true, &["y".to_string()][..])
        );
        assert!(a.wants("auth/x") && !a.wants("auth/x#k=1"));
        let a = parse(&["auth/"]);
        assert!(a.wants("auth/x") && a.wants("x/auth/") && !a.wants("files/y"));
        let a = parse(&["--list", "--format", "terse"]);
        assert!(a.list && a.terse && a.wants("anything"));
        assert!(!parse(&["--ignored"]).wants("anything"), "no trial is ignored");
        assert!(Arguments::parse(["--frobnicate".to_string()]).is_err());
    }

    #[test]
    fn failures_and_panics_are_counted() {
        let trials = vec![
            Trial::test("a", || Ok(())),
            Trial::test("b", || Err("no".into())),
            Trial::test("c", || panic!("boom")),
            Trial::test("d", || Ok(())),
        ];
        let c = run(&parse(&["--skip", "d"]), trials);
        assert_eq!(c, Conclusion { passed: 1, failed: vec!["b".into(), "c".into()], filtered_out: 1 });
    }
}
