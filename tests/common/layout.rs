//! The layout of `tests/`, checked so that a test file cannot silently never run.
//!
//! Every package sets `autotests = false` and declares one test target per group folder,
//! `tests/<group>/main.rs`, whose modules are the group's files. A file that no `main.rs` declares
//! would never be compiled, and a folder no manifest declares would never be built: these checks fail
//! naming them instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::paths::repo_root;

/// Folders of `tests/` that hold no test target: the code the groups share and the data the tests read.
pub const NOT_GROUPS: [&str; 2] = ["common", "fixtures"];

/// The `mod NAME;` declarations of a Rust source (with or without `pub`), by name.
fn declared_modules(source: &str) -> BTreeSet<String> {
    source
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("pub ").unwrap_or(line).strip_prefix("mod "))
        .filter_map(|rest| rest.strip_suffix(';'))
        .map(|name| name.trim().to_string())
        .collect()
}

/// The entries of `folder`: each one's path and file name.
fn entries(folder: &Path) -> Vec<(PathBuf, String)> {
    std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| {
            let path = entry.expect("a readable folder entry").path();
            let name = path
                .file_name()
                .expect("an entry has a name")
                .to_string_lossy()
                .into_owned();
            (path, name)
        })
        .collect()
}

/// Panics naming every `.rs` file and sub-folder of `folder` that `root_file` (the folder's
/// `main.rs` or `mod.rs`, itself exempt) does not declare as a module: such a file is never compiled,
/// so its tests would never run.
pub fn assert_every_file_is_a_module(folder: &Path, root_file: &str) {
    let root = folder.join(root_file);
    let source = std::fs::read_to_string(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let declared = declared_modules(&source);
    let mut undeclared = Vec::new();
    for (path, name) in entries(folder) {
        let module = if path.is_dir() {
            name.clone()
        } else if let Some(stem) = name.strip_suffix(".rs") {
            stem.to_string()
        } else {
            continue;
        };
        if name != root_file && !declared.contains(&module) {
            undeclared.push(name);
        }
    }
    undeclared.sort();
    assert!(
        undeclared.is_empty(),
        "{} does not declare {undeclared:?}: add `mod NAME;` there for each, or they never run",
        root.display()
    );
}

/// The test targets the workspace declares: each member's `[[test]]` paths, made relative to the
/// repository root.
pub fn declared_test_targets() -> Vec<PathBuf> {
    let root = repo_root();
    let read = |manifest: &Path| -> toml::Table {
        let text = std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        text.parse().unwrap_or_else(|e| panic!("{}: {e}", manifest.display()))
    };
    let workspace = read(&root.join("Cargo.toml"));
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("Cargo.toml lists workspace.members");
    let canonical_root = root.canonicalize().expect("the repository root exists");
    let mut targets = Vec::new();
    for member in members {
        let dir = root.join(member.as_str().expect("a member is a path"));
        let manifest = dir.join("Cargo.toml");
        let tests = read(&manifest)
            .get("test")
            .and_then(|t| t.as_array())
            .cloned()
            .unwrap_or_default();
        for test in tests {
            let path = test["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: every [[test]] names its path", manifest.display()));
            let file = dir
                .join(path)
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: test path {path}: {e}", manifest.display()));
            let relative = file
                .strip_prefix(&canonical_root)
                .unwrap_or_else(|_| panic!("{}: test path {path} is outside the repository", manifest.display()));
            targets.push(relative.to_path_buf());
        }
    }
    targets
}

/// Panics unless every `.rs` file of `tests/<group>` is declared by its `main.rs` and every folder of
/// `tests/` is a known group (see [`assert_every_folder_is_a_known_group`]): the one check each
/// group's `main.rs` runs.
pub fn assert_every_test_file_is_built(group: &str) {
    assert_every_file_is_a_module(&repo_root().join("tests").join(group), "main.rs");
    assert_every_folder_is_a_known_group();
}

/// Panics unless every test target is a `tests/<group>/main.rs`, every folder of `tests/` is such a
/// group or one of [`NOT_GROUPS`], no `.rs` file lies loose in `tests/`, and the shared files in
/// `tests/common` are all declared by its `mod.rs`.
pub fn assert_every_folder_is_a_known_group() {
    let tests = repo_root().join("tests");
    let mut groups = BTreeSet::new();
    for target in declared_test_targets() {
        let group = target
            .strip_prefix("tests")
            .ok()
            .filter(|rest| rest.components().count() == 2 && rest.ends_with("main.rs"))
            .and_then(|rest| rest.parent())
            .unwrap_or_else(|| panic!("test target {} is not a tests/<group>/main.rs", target.display()));
        groups.insert(group.to_string_lossy().into_owned());
    }
    let mut unknown = Vec::new();
    for (path, name) in entries(&tests) {
        let known = if path.is_dir() {
            groups.contains(&name) || NOT_GROUPS.contains(&name.as_str())
        } else {
            !name.ends_with(".rs")
        };
        if !known {
            unknown.push(name);
        }
    }
    unknown.sort();
    assert!(
        unknown.is_empty(),
        "tests/ holds {unknown:?}, which no package builds (autotests is off): put test files in a group \
         folder tests/<group>/ declared by its main.rs, and declare a new group as a [[test]] with \
         path tests/<group>/main.rs in its package's Cargo.toml (groups now: {groups:?})"
    );
    assert_every_file_is_a_module(&tests.join("common"), "mod.rs");
}
