//! Property tests of the scenario loader (issue 12, item 1): the real scenario
//! files with random lines replaced, and random matrices. The loader never
//! panics or hangs; it loads the file or answers an error naming it.

use std::path::{Path, PathBuf};

use bulkmock_harness::scenario::load::{MAX_CASES_PER_FILE, parse};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases per target, printed by each (`--nocapture`) and recorded in BENCHMARKS.md.
const CASES: &[(&str, u32)] = &[("scenario_line_edits", 512), ("scenario_matrix", 256)];

fn config(target: &str) -> Config {
    let cases = CASES.iter().find(|(t, _)| *t == target).expect("target in CASES").1;
    eprintln!("proptest {target}: {cases} cases");
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Every scenario file of the library, as text.
fn corpus() -> &'static [String] {
    static CORPUS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut texts = Vec::new();
        let mut dirs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|x| x == "toml") {
                    texts.push(std::fs::read_to_string(path).unwrap());
                }
            }
        }
        texts.sort();
        assert!(texts.len() > 50, "the scenario library is there");
        texts
    })
}

const PATH: &str = "scenarios/fuzz/case.toml";

/// Loads or names the file; nothing else.
fn check(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = parse(text, Path::new(PATH)) {
        prop_assert!(e.to_string().starts_with(PATH), "{e}");
    }
    Ok(())
}

/// Replacement lines: scenario-like keys with odd values, table headers,
/// matrix references, or any text.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,12} = (\"[^\"\\\\]{0,12}\"|-?[0-9]{1,20}|true|\\[\\]|\\{ \\}|[0-9.e+-]{1,8})",
        "\\[\\[?(server|client|expect|matrix|fault|checks|[a-z]{1,6})\\]\\]?",
        "[a-z_]{1,8} = \"\\$\\{[a-z_]{0,8}\\}?\"",
        "fault = \\{ kind = \"[a-z_]{1,12}\"(, [a-z_]{1,10} = -?[0-9]{1,6})? \\}",
        "\\PC{0,40}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(config("scenario_line_edits"))]
    #[test]
    fn edited_scenario_files_load_or_name_the_file(
        file in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), line()), 1..4),
    ) {
        let text = file.get(corpus());
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for (at, replacement) in edits {
            let i = at.index(lines.len());
            lines[i] = replacement;
        }
        check(&(lines.join("\n") + "\n"))?;
    }
}

proptest! {
    #![proptest_config(config("scenario_matrix"))]
    #[test]
    fn matrices_of_any_shape_load_or_name_the_file(
        keys in proptest::collection::vec(
            ("[a-z]{1,6}", proptest::collection::vec("(\"[a-z0-9${}]{0,6}\"|-?[0-9]{1,4}|true|\\[\\]|\\{\\})", 0..12)),
            0..6,
        ),
        uses in proptest::collection::vec("[a-z]{1,6}", 0..4),
    ) {
        let mut text = String::from(
            "title = \"t\"\ndescription = \"d\"\nrequirements = [\"CLI-022\"]\n\n[server]\npatients = 3\n\n[client]\nlevel = \"${level}\"\n",
        );
        for u in &uses {
            text.push_str(&format!("# uses ${{{u}}}\nrun_note_{u} = \"${{{u}}}\"\n"));
        }
        text.push_str("\n[expect]\noutcome = \"complete\"\n\n[matrix]\nlevel = [\"system\", \"patient\"]\n");
        for (key, values) in &keys {
            text.push_str(&format!("{key} = [{}]\n", values.join(", ")));
        }
        check(&text)?;
    }
}

/// The error of a scenario that must not load.
#[track_caller]
fn refused(text: &str) -> String {
    match parse(text, Path::new(PATH)) {
        Ok(file) => panic!("{} cases loaded; the matrix should have been refused", file.cases.len()),
        Err(e) => e.to_string(),
    }
}

/// A matrix whose product is past the limit is refused before any case is
/// built, with the file and the `[matrix]` line; one at the limit loads.
#[test]
fn a_matrix_past_the_case_limit_is_refused_up_front() {
    let scenario = |keys: usize, values: usize| {
        let mut text = String::from(
            "title = \"t\"\ndescription = \"d\"\nrequirements = [\"CLI-022\"]\n\n[server]\npatients = 3\n\n[client]\nlevel = \"system\"\n",
        );
        let list: Vec<String> = (0..values).map(|v| v.to_string()).collect();
        let mut matrix = String::from("\n[matrix]\n");
        for k in 0..keys {
            text.push_str(&format!("# ${{k{k}}}\n"));
            matrix.push_str(&format!("k{k} = [{}]\n", list.join(", ")));
        }
        text.push_str("\n[expect]\noutcome = \"complete\"\n");
        text + &matrix
    };
    let err = refused(&scenario(4, 10));
    assert!(err.starts_with(&format!("{PATH}:")), "{err}");
    assert!(err.contains("10000 cases") && err.contains(&format!("at most {MAX_CASES_PER_FILE}")), "{err}");
    let err = refused(&scenario(40, 10));
    assert!(err.contains("more than"), "{err}");
    assert_eq!(parse(&scenario(3, 10), Path::new(PATH)).unwrap().cases.len(), 1000);
}
