//! The dependency direction written in the crate root, checked: every
//! `crate::module` reference in a module's sources must point to a module
//! it may use. A new edge against the order fails here, with the file and
//! line, before it can grow into a cycle.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module and the modules it may use. Modules of the
/// foundation (`config`, `private_file`, `metrics`) may be used by anyone.
const MAY_USE: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("metrics", &[]),
    ("cluster", &[]),
    ("node", &["config", "private_file", "cluster"]),
    ("private_file", &[]),
    ("tls", &["config", "private_file"]),
    ("auth", &["config", "private_file"]),
    ("console", &["auth"]),
    ("store", &["auth", "console"]),
    ("schedule", &["auth", "store"]),
    ("attendance", &["auth", "store", "schedule"]),
    ("room", &["auth", "store", "schedule"]),
    ("webhooks", &["auth", "store", "schedule", "attendance"]),
    ("sfu", &[]),
    (
        "live",
        &["auth", "store", "schedule", "attendance", "room", "sfu"],
    ),
    (
        "nodes",
        &[
            "auth",
            "store",
            "schedule",
            "attendance",
            "room",
            "sfu",
            "live",
            "node",
        ],
    ),
    (
        "signal",
        &[
            "auth",
            "store",
            "schedule",
            "attendance",
            "room",
            "sfu",
            "live",
            "nodes",
        ],
    ),
    (
        "http",
        &[
            "auth",
            "console",
            "store",
            "schedule",
            "attendance",
            "room",
            "sfu",
            "live",
            "nodes",
            "signal",
            "webhooks",
            "node",
        ],
    ),
    (
        "server",
        &[
            "tls",
            "auth",
            "store",
            "schedule",
            "attendance",
            "room",
            "sfu",
            "live",
            "nodes",
            "signal",
            "webhooks",
            "http",
            "node",
        ],
    ),
    (
        "cli",
        &[
            "tls",
            "auth",
            "console",
            "store",
            "schedule",
            "attendance",
            "room",
            "sfu",
            "live",
            "nodes",
            "signal",
            "webhooks",
            "http",
            "server",
            "node",
        ],
    ),
];

const FOUNDATION: &[&str] = &["config", "private_file", "metrics", "cluster"];

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("readable source folder") {
            sources(&entry.expect("a folder entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The top-level modules `text` refers to as `crate::NAME`.
fn references(text: &str) -> BTreeSet<(usize, String)> {
    let mut found = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert((number + 1, name));
        }
    }
    found
}

#[test]
fn modules_depend_only_on_the_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known: BTreeSet<&str> = MAY_USE.iter().map(|(m, _)| *m).collect();
    let mut wrong = Vec::new();
    for (module, allowed) in MAY_USE {
        let mut files = Vec::new();
        let folder = src.join(module);
        if folder.is_dir() {
            sources(&folder, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        assert!(!files.is_empty(), "no sources for {module}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for (line, target) in references(&text) {
                let ok = target == *module
                    || !known.contains(target.as_str())
                    || FOUNDATION.contains(&target.as_str())
                    || allowed.contains(&target.as_str())
                    // The storage test suite drives the store through the
                    // ledger, as the server does (test code only).
                    || (file.ends_with("store/suite.rs") && target == "attendance");
                if !ok {
                    wrong.push(format!(
                        "{}:{line}: {module} uses crate::{target}",
                        file.strip_prefix(&src).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "references against the order in src/lib.rs:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_place_in_the_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known: BTreeSet<&str> = MAY_USE.iter().map(|(m, _)| *m).collect();
    for entry in std::fs::read_dir(&src).expect("src/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if ["lib", "main", "layers"].contains(&name) {
            continue;
        }
        assert!(known.contains(name), "src/{name} is not in layers::MAY_USE");
    }
}
