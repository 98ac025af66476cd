//! Finding scenario files, expanding their matrices into cases, and errors
//! that name file, line and field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::model::Scenario;

/// A scenario file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line (0 when the whole file is at fault).
    pub line: usize,
    /// The field at fault, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// One runnable case: a scenario with one combination of its matrix values.
#[derive(Debug, Clone)]
pub struct Case {
    /// Stable id: the scenario id, then `#key=value,...` for matrix cases.
    pub id: String,
    /// The scenario id: the path under the scenarios folder without `.toml`.
    pub scenario_id: String,
    /// The file it came from.
    pub path: PathBuf,
    /// This case's matrix values (as text).
    pub matrix: BTreeMap<String, String>,
    /// The scenario with the values substituted.
    pub scenario: Scenario,
}

/// A parsed scenario file and its cases.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    /// The scenario id.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// Its cases (one when there is no matrix).
    pub cases: Vec<Case>,
}

/// Every `*.toml` scenario under `paths` (files or folders, recursively), parsed
/// and expanded, sorted by id. The first bad file stops the load.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<ScenarioFile>, ScenarioError> {
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    for path in paths {
        let mut found = Vec::new();
        collect(path, &mut found)?;
        // Without a `scenarios` folder above, ids are relative to the folder given.
        let base = if path.is_dir() { path.clone() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
        files.extend(found.into_iter().map(|f| (f, base.clone())));
    }
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    let mut out: Vec<ScenarioFile> = Vec::with_capacity(files.len());
    for (file, base) in files {
        let loaded = with_id(load_file(&file)?, &scenario_id_under(&file, &base));
        if let Some(other) = out.iter().find(|f| f.id == loaded.id) {
            return Err(ScenarioError {
                file: file.clone(),
                line: 0,
                field: None,
                message: format!("its id {:?} is also the id of {}", loaded.id, other.path.display()),
            });
        }
        out.push(loaded);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// `loaded` with the scenario id `id`, its cases' ids renamed to match.
pub(crate) fn with_id(mut loaded: ScenarioFile, id: &str) -> ScenarioFile {
    if id != loaded.id {
        loaded.id = id.to_string();
        for case in &mut loaded.cases {
            case.id = case.id.replacen(&case.scenario_id, id, 1);
            case.scenario_id = id.to_string();
        }
    }
    loaded
}

/// The id of `file` found under `base`: its path under the nearest `scenarios`
/// folder, or else under `base`, without the extension.
fn scenario_id_under(file: &Path, base: &Path) -> String {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    if absolute.components().any(|c| c.as_os_str() == "scenarios") {
        return scenario_id(file);
    }
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    match absolute.with_extension("").strip_prefix(&base) {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
        }
        _ => scenario_id(file),
    }
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ScenarioError> {
    let io_error = |e: std::io::Error| ScenarioError {
        file: path.to_path_buf(),
        line: 0,
        field: None,
        message: format!("cannot read: {e}"),
    };
    let meta = std::fs::metadata(path).map_err(io_error)?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(path).map_err(io_error)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, out)?;
        } else if entry.extension().is_some_and(|x| x == "toml") {
            out.push(entry);
        }
    }
    Ok(())
}

/// The scenario id of `file`: its path under the nearest ancestor folder named
/// `scenarios`, without the extension (`auth/token-expires-mid-export`); the
/// file stem when there is no such folder.
pub fn scenario_id(file: &Path) -> String {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let components: Vec<String> =
        absolute.with_extension("").components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    match components.iter().rposition(|c| c == "scenarios") {
        Some(i) if i + 1 < components.len() => components[i + 1..].join("/"),
        _ => components.last().cloned().unwrap_or_default(),
    }
}

/// Parses one scenario file into its cases.
pub fn load_file(path: &Path) -> Result<ScenarioFile, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.to_path_buf(),
        line: 0,
        field: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, path)
}

/// Most cases one scenario file may expand to: a bound on what a matrix can
/// cost before any case is built (a few keys of many values multiply fast).
pub const MAX_CASES_PER_FILE: usize = 1000;

/// Parses scenario text; `path` names the file in errors and gives the id.
pub fn parse(text: &str, path: &Path) -> Result<ScenarioFile, ScenarioError> {
    let err = |line: usize, field: Option<&str>, message: String| ScenarioError {
        file: path.to_path_buf(),
        line,
        field: field.map(str::to_string),
        message,
    };
    let raw: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
    let matrix = read_matrix(&raw).map_err(|(field, message)| {
        err(line_of(text, "[matrix]").max(line_of_key(text, &field)), Some(&field), message)
    })?;
    let count = matrix.values().try_fold(1usize, |n, v| n.checked_mul(v.len()));
    if count.is_none_or(|n| n > MAX_CASES_PER_FILE) {
        let count = count.map_or("more than usize::MAX".to_string(), |n| n.to_string());
        return Err(err(
            line_of(text, "[matrix]"),
            Some("matrix"),
            format!("the matrix expands to {count} cases, at most {MAX_CASES_PER_FILE} per file; split the file"),
        ));
    }
    let id = scenario_id(path);
    let mut cases = Vec::new();
    for values in combinations(&matrix) {
        let substituted = substitute(text, &values).map_err(|(line, message)| err(line, None, message))?;
        let scenario: Scenario = toml::from_str(&substituted).map_err(|e| toml_error(&substituted, path, &e))?;
        validate(&scenario, text).map_err(|(line, field, message)| err(line, field.as_deref(), message))?;
        let matrix: BTreeMap<String, String> = values.iter().map(|(k, v)| (k.clone(), bare(v))).collect();
        let case_id = if matrix.is_empty() {
            id.clone()
        } else {
            let suffix: Vec<String> = matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{id}#{}", suffix.join(","))
        };
        cases.push(Case { id: case_id, scenario_id: id.clone(), path: path.to_path_buf(), matrix, scenario });
    }
    for key in matrix.keys() {
        if !text.contains(&format!("${{{key}}}")) {
            return Err(err(
                line_of_key(text, key),
                Some(key),
                format!("matrix key `{key}` is never used as ${{{key}}}"),
            ));
        }
    }
    Ok(ScenarioFile { id, path: path.to_path_buf(), cases })
}

fn toml_error(text: &str, path: &Path, e: &toml::de::Error) -> ScenarioError {
    let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim().to_string();
    let field = unknown_field(&message).or_else(|| {
        let l = text.lines().nth(line.saturating_sub(1))?;
        let (key, _) = l.split_once('=')?;
        let key = key.trim().trim_start_matches('{').trim();
        (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
    });
    ScenarioError { file: path.to_path_buf(), line, field, message }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// The `[matrix]` table: each key a non-empty array of strings, numbers or booleans.
fn read_matrix(raw: &toml::Table) -> Result<BTreeMap<String, Vec<toml::Value>>, (String, String)> {
    let Some(matrix) = raw.get("matrix") else { return Ok(BTreeMap::new()) };
    let table = matrix.as_table().ok_or(("matrix".to_string(), "must be a table of arrays".to_string()))?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let Some(values) = value.as_array().filter(|a| !a.is_empty()) else {
            return Err((key.clone(), "must be a non-empty array of values".into()));
        };
        if let Some(bad) = values.iter().find(|v| v.is_table() || v.is_array() || v.is_datetime()) {
            return Err((key.clone(), format!("values must be strings, numbers or booleans, found {}", literal(bad))));
        }
        out.insert(key.clone(), values.clone());
    }
    Ok(out)
}

/// Every combination of matrix values, keys in sorted order; one empty combination without a matrix.
fn combinations(matrix: &BTreeMap<String, Vec<toml::Value>>) -> Vec<Vec<(String, toml::Value)>> {
    let mut out: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in matrix {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push((key.clone(), v.clone()));
                    next
                })
            })
            .collect();
    }
    out
}

/// A value as text, without quotes.
fn bare(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => literal(other),
    }
}

/// A scalar as a TOML literal (strings quoted and escaped).
fn literal(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Replaces `"${key}"` (a whole quoted value) by the value as a TOML literal,
/// then `${key}` inside longer strings by its bare text. Lines keep their numbers.
fn substitute(text: &str, values: &[(String, toml::Value)]) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.lines().enumerate() {
        let mut line = line.to_string();
        if !line.trim_start().starts_with('#') {
            for (key, value) in values {
                line = line.replace(&format!("\"${{{key}}}\""), &literal(value));
                line = line.replace(&format!("${{{key}}}"), &bare(value));
            }
            if let Some(start) = line.find("${") {
                let name: String = line[start + 2..].chars().take_while(|c| *c != '}').collect();
                return Err((n + 1, format!("`${{{name}}}` names no key of [matrix]")));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.trim() == needle).map_or(0, |n| n + 1)
}

fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')))
        .map_or(0, |n| n + 1)
}

/// Checks serde cannot: fault rules, requirement ids, check names, combinations.
fn validate(s: &Scenario, text: &str) -> Result<(), (usize, Option<String>, String)> {
    for (i, rule) in s.faults.iter().enumerate() {
        if let Err(message) = rule.validate() {
            let line =
                text.lines().enumerate().filter(|(_, l)| l.trim() == "[[fault]]").nth(i).map_or(0, |(n, _)| n + 1);
            return Err((line, Some("fault".into()), message));
        }
    }
    for id in &s.requirements {
        if !is_requirement_id(id) {
            return Err((
                line_of_key(text, "requirements"),
                Some("requirements".into()),
                format!("{id:?} is not a requirement ID (CLI-nnn, SRV-nnn, AUTH-nnn or E-nn)"),
            ));
        }
    }
    for name in &s.expect.checks {
        if crate::checks::find(name).is_none() {
            return Err((
                line_of_key(text, "checks"),
                Some("checks".into()),
                format!("no check named {name:?}; `bulkmock scenarios checks` lists them"),
            ));
        }
    }
    if let Some(recovery) = &s.expect.recovery {
        validate_recovery(s, recovery, text)?;
    }
    if s.expect.unreported.is_some() && s.expect.outcome != super::model::ExpectedOutcome::FailCleanly {
        return Err((
            line_of_key(text, "unreported"),
            Some("unreported".into()),
            "needs outcome \"fail_cleanly\": it judges an exit 0 where the case expects a clean failure".into(),
        ));
    }
    let client = &s.client;
    match (client.level, &client.group) {
        (super::model::LevelName::Group, None) => {
            return Err((line_of_key(text, "level"), Some("group".into()), "level \"group\" needs `group`".into()));
        }
        (level, Some(_)) if level != super::model::LevelName::Group => {
            return Err((line_of_key(text, "group"), Some("group".into()), "`group` needs level = \"group\"".into()));
        }
        _ => {}
    }
    if let Some(inc) = &s.incremental {
        validate_incremental(s, inc, text)?;
    }
    if s.server.clock_offset_s.unsigned_abs() > MAX_CLOCK_OFFSET_S {
        return Err((
            line_of_key(text, "clock_offset_s"),
            Some("clock_offset_s".into()),
            format!("must be within {MAX_CLOCK_OFFSET_S} seconds (30 days) either way"),
        ));
    }
    if !(s.expect.max_seconds > 0.0 && s.expect.max_seconds <= 3600.0) {
        return Err((
            line_of_key(text, "max_seconds"),
            Some("max_seconds".into()),
            "must be above 0 and at most 3600".into(),
        ));
    }
    if s.title.trim().is_empty() {
        return Err((line_of_key(text, "title"), Some("title".into()), "must say what a client must do".into()));
    }
    Ok(())
}

/// A recovery needs an outcome to recover to and names client requirements.
fn validate_recovery(
    s: &Scenario,
    recovery: &super::model::Recovery,
    text: &str,
) -> Result<(), (usize, Option<String>, String)> {
    let at = line_of_key(text, "recovery");
    if s.expect.outcome == super::model::ExpectedOutcome::FailCleanly {
        return Err((at, Some("recovery".into()), "needs outcome \"complete\" or \"partial\": there is nothing to recover to when the case expects a clean failure".into()));
    }
    if recovery.requirements.is_empty() {
        return Err((
            at,
            Some("recovery".into()),
            "`requirements` must name at least one client requirement (CLI-nnn)".into(),
        ));
    }
    for id in &recovery.requirements {
        if crate::requirements::find(id).is_none() {
            return Err((
                at,
                Some("recovery".into()),
                format!("{id:?} is not a client requirement (CLI-nnn of the requirements list)"),
            ));
        }
    }
    Ok(())
}

/// The largest server clock offset a scenario may ask for: 30 days.
const MAX_CLOCK_OFFSET_S: u64 = 30 * 86_400;

/// An `[incremental]` case's final state must be computable from the data's
/// revision alone, so its request can only narrow by level, Group and `_type`.
fn validate_incremental(
    s: &Scenario,
    inc: &super::model::Incremental,
    text: &str,
) -> Result<(), (usize, Option<String>, String)> {
    let at = |key: &str| line_of_key(text, key).max(line_of(text, "[incremental]"));
    if !(1..=50).contains(&inc.revisions) {
        return Err((at("revisions"), Some("revisions".into()), "must be from 1 to 50".into()));
    }
    if !(1..=5).contains(&inc.runs) {
        return Err((at("runs"), Some("runs".into()), "must be from 1 to 5".into()));
    }
    if s.expect.output == super::model::OutputExpectation::Empty {
        return Err((
            line_of_key(text, "output"),
            Some("output".into()),
            "an [incremental] case is judged against the data's final state: use output = \"export\" or \"any\"".into(),
        ));
    }
    let c = &s.client;
    let narrowing = [
        ("since", c.since.is_some()),
        ("until", c.until.is_some()),
        ("type_filters", !c.type_filters.is_empty()),
        ("elements", !c.elements.is_empty()),
        ("patients", !c.patients.is_empty()),
        ("organize_output_by", c.organize_output_by.is_some()),
        ("include_associated_data", !c.include_associated_data.is_empty()),
    ];
    if let Some((key, _)) = narrowing.iter().find(|(_, set)| *set) {
        return Err((
            line_of_key(text, key),
            Some((*key).into()),
            format!(
                "an [incremental] scenario cannot set `{key}`: the client sends `_since` itself (the previous \
                 run's transactionTime), and the final state is judged by level, group and types only"
            ),
        ));
    }
    Ok(())
}

/// Whether `id` looks like a requirement ID of the project's list.
pub fn is_requirement_id(id: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match id.split_once('-') {
        Some(("CLI" | "SRV" | "AUTH", n)) => digits(n, 3),
        Some(("E", n)) => digits(n, 2),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<ScenarioFile, ScenarioError> {
        parse(text, Path::new("/x/scenarios/status/retry-after.toml"))
    }

    #[test]
    fn matrix_expands_into_cases_with_stable_ids_and_typed_values() {
        let f = parse_str(
            "title = \"t\"\n[[fault]]\non = \"status\"\nfault = { kind = \"respond\", status = 202, \"${form}\" = \"${wait}\" }\n[client]\nalg = \"${alg}\"\n[matrix]\nalg = [\"RS384\", \"ES384\"]\nform = [\"retry_after_s\"]\nwait = [2]\n",
        )
        .unwrap();
        assert_eq!(f.id, "status/retry-after");
        let ids: Vec<&str> = f.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "status/retry-after#alg=RS384,form=retry_after_s,wait=2",
                "status/retry-after#alg=ES384,form=retry_after_s,wait=2"
            ]
        );
        assert_eq!(f.cases[0].scenario.client.alg, crate::scenario::Alg::Rs384);
        assert!(matches!(
            f.cases[1].scenario.faults[0].fault,
            bulkmock_server::Fault::Respond { retry_after_s: Some(2), .. }
        ));
    }

    #[test]
    fn server_quirks_parse_reach_the_server_config_and_bad_names_are_named() {
        let f = parse_str("title = \"t\"\n[server]\nquirks = [\"no-until\", \"long-queue=0.01\"]\n").unwrap();
        let config = crate::runner::setup::server_config(&f.cases[0], 1);
        assert_eq!(config.quirks.to_string(), "long-queue=0.01,no-until");
        let e = parse_str("title = \"t\"\n[server]\npatients = 5\nquirks = [\"vendor-x\"]\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.to_string().contains("\"vendor-x\"") && e.to_string().contains("get-kickoff-only"), "{e}");
    }

    #[test]
    fn incremental_scenarios_are_validated_with_file_line_and_field() {
        let ok = parse_str("title = \"t\"\n[server]\nclock_offset_s = -3600\n[incremental]\nrevisions = 4\nruns = 2\n")
            .unwrap();
        let scenario = &ok.cases[0].scenario;
        assert_eq!(scenario.incremental.as_ref().map(|i| (i.final_revision(), i.total_runs())), Some((8, 3)));
        assert_eq!(scenario.server.clock_offset_s, -3600);
        let e = parse_str("title = \"t\"\n[client]\nsince = \"2020-01-01T00:00:00Z\"\n[incremental]\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (3, Some("since")), "{e}");
        assert!(e.to_string().contains("cannot set `since`"), "{e}");
        let e = parse_str("title = \"t\"\n[incremental]\nrevisions = 0\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (3, Some("revisions")), "{e}");
        let e = parse_str("title = \"t\"\n[incremental]\nruns = 9\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (3, Some("runs")), "{e}");
        let e = parse_str("title = \"t\"\n[server]\nclock_offset_s = 9999999\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (3, Some("clock_offset_s")), "{e}");
        let e = parse_str("title = \"t\"\n[incremental]\n[expect]\noutput = \"empty\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (4, Some("output")), "{e}");
        let e = parse_str("title = \"t\"\n[incremental]\nevery = 3\n").unwrap_err();
        assert_eq!(e.line, 3, "unknown fields are named: {e}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse_str("title = \"t\"\n[server]\npatients = 5\nspeed = 3\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (4, Some("speed")), "{e}");
        assert!(e.to_string().starts_with("/x/scenarios/status/retry-after.toml:4: field `speed`"), "{e}");
        let e = parse_str("title = \"t\"\n\n[[fault]]\non = \"status\"\nfault = { kind = \"explode\" }\n").unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let e =
            parse_str("title = \"t\"\n[[fault]]\non = \"token\"\nfault = { kind = \"gzip\", mode = \"corrupt\" }\n")
                .unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (2, Some("fault")), "{e}");
        let e = parse_str("title = \"t\"\n[client]\nalg = \"${algo}\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse_str("title = \"t\"\n[expect]\nchecks = [\"auth.nope\"]\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (3, Some("checks")), "{e}");
        let e = parse_str("title = \"t\"\nrequirements = [\"CLI-62\"]\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("requirements"), "{e}");
        let e = parse_str("title = \"t\"\n[matrix]\nalg = [\"RS384\"]\n").unwrap_err();
        assert!(e.message.contains("never used"), "{e}");
    }
}
