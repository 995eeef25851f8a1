//! Checks on the userland sources that would otherwise be review comments:
//! every file has module docs, and every `unsafe` block a `// SAFETY:`
//! comment right above it. (The compiler already keeps `unsafe` inside the
//! `sys` modules: the crates `deny(unsafe_code)` elsewhere.)

use std::fs;
use std::path::{Path, PathBuf};

/// The `.rs` files of userland/ (init, ktap, tests).
fn sources() -> Vec<PathBuf> {
    let userland = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut dirs = vec![userland];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "found only {files:?}");
    files
}

#[test]
fn every_file_has_module_docs() {
    for path in sources() {
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} does not start with module docs (`//!`)",
            path.display()
        );
    }
}

#[test]
fn every_unsafe_block_has_a_safety_comment() {
    for path in sources() {
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Spelled in two parts so that this file does not match itself.
        let needle = concat!("unsafe", " {");
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if !code.contains(needle) {
                continue;
            }
            // The nearest comment block above (skipping nothing but the
            // lines of that block) must contain `SAFETY:`.
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
