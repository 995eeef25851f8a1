//! Checks that would otherwise be review comments, as tests, so that
//! `cargo test` fails where CI would: formatting, module docs on every Rust
//! file, a `// SAFETY:` comment above every `unsafe` block, docs that name
//! every verb.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("builder has a parent")
        .to_path_buf()
}

/// Every `.rs` file of the workspace's crates.
fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = ["builder", "userland", "libdeterm"]
        .iter()
        .map(|d| root().join(d))
        .filter(|d| d.is_dir())
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("readable source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 20, "found only {files:?}");
    files
}

#[test]
fn every_file_has_module_docs() {
    for path in sources() {
        let text = fs::read_to_string(&path).expect("readable");
        assert!(
            text.starts_with("//!"),
            "{} does not start with module docs (`//!`)",
            path.display()
        );
    }
}

#[test]
fn every_unsafe_block_has_a_safety_comment() {
    // Spelled in two parts so that this file does not match itself.
    let needle = concat!("unsafe", " {");
    for path in sources() {
        let text = fs::read_to_string(&path).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if !code.contains(needle) {
                continue;
            }
            // The comment block right above must contain `SAFETY:`.
            let documented = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("//"))
                .any(|l| l.contains("// SAFETY:"));
            assert!(
                documented,
                "{}:{}: unsafe block without a `// SAFETY:` comment above it",
                path.display(),
                i + 1
            );
        }
    }
}

#[test]
fn code_is_formatted() {
    let out = crate::deps::command("cargo")
        .current_dir(root())
        .args(["fmt", "--all", "--check"])
        .output()
        .expect("running cargo fmt");
    assert!(
        out.status.success(),
        "cargo fmt --all --check found unformatted code (run `cargo fmt --all`):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn readme_gives_the_two_setup_commands_and_ci_runs_the_test_one() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(readme.contains("cargo det demo") && readme.contains("cargo det test"));
    let ci = fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == "cargo det test"),
        ".ci/run must run the README's test command"
    );
}
