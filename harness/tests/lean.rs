//! The library a downstream test depends on compiles nothing only the command
//! line uses: no package reachable from `bulkmock-harness` in `Cargo.lock` (its
//! dependencies, dev-dependencies and every optional feature, so more than a
//! build compiles) is one of the `bulkmock` binary's own (issue 21, item 3).

use std::collections::{BTreeMap, BTreeSet};

/// Packages only the command line (`cli/`, package `bulkmock`) may use.
const CLI_ONLY: &[&str] = &["clap", "clap_builder", "clap_derive", "indicatif", "tracing-subscriber", "bulkmock"];

#[test]
fn the_harness_library_reaches_no_command_line_dependency() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    let text = std::fs::read_to_string(path).expect("the workspace's Cargo.lock");
    let lock: toml::Table = toml::from_str(&text).expect("Cargo.lock is TOML");
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in lock["package"].as_array().expect("[[package]]") {
        let name = package["name"].as_str().expect("a name").to_string();
        let list = package.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default();
        let entry = deps.entry(name).or_default();
        // "name" or "name version" (when several versions are locked).
        entry.extend(list.iter().filter_map(|d| d.as_str()?.split(' ').next().map(str::to_string)));
    }
    assert!(deps.contains_key("bulkmock-harness"), "the package is named bulkmock-harness");
    let mut reached = BTreeSet::new();
    let mut stack = vec!["bulkmock-harness".to_string()];
    while let Some(name) = stack.pop() {
        if reached.insert(name.clone()) {
            stack.extend(deps.get(&name).into_iter().flatten().cloned());
        }
    }
    let found: Vec<&&str> = CLI_ONLY.iter().filter(|p| reached.contains(**p)).collect();
    assert!(found.is_empty(), "bulkmock-harness reaches {found:?}: keep them in cli/ (package bulkmock)");
    // The check itself sees them: the binary does use them.
    assert!(deps["bulkmock"].iter().any(|d| d == "clap"));
}
