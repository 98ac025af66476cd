//! Compiles the workspace's scenario library (`../scenarios`) into the harness:
//! writes `$OUT_DIR/builtin_suite.rs`, one `include_bytes!` entry per file
//! (relative path with `/`, sorted), read by `src/suite.rs`. Every file under
//! the folder is included (scenarios, `COVERAGE.md`), hidden ones excepted, so
//! `bulkmock scenarios export` writes the folder back as it is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../scenarios");
    let root = root.canonicalize().unwrap_or_else(|e| {
        panic!("{}: {e}: the built-in suite is the workspace's scenarios/ folder, next to harness/", root.display())
    });
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk(&root, &root, &mut files, &mut dirs);
    files.sort();
    // A folder's own entry notices files added or removed; the files notice edits.
    for dir in &dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let mut out = String::from(
        "/// Every file of the built-in suite: (path under `scenarios/`, bytes), sorted by path.\n\
         pub(crate) static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let path = path.to_str().unwrap_or_else(|| panic!("{}: not UTF-8", path.display()));
        writeln!(out, "    ({rel:?}, include_bytes!({path:?})),").expect("a String");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("builtin_suite.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

/// Collects `(relative path, absolute path)` of every file under `dir` and every folder.
fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>, dirs: &mut Vec<PathBuf>) {
    dirs.push(dir.to_path_buf());
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, files, dirs);
        } else {
            let rel = path.strip_prefix(root).expect("under the root");
            let rel: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            files.push((rel.join("/"), path));
        }
    }
}
