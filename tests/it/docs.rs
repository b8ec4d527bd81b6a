//! The reference cannot drift from the code: every flag that `--help` prints, for every
//! command, is documented under `docs/`; and the README keeps its promises (the two commands at
//! the top, at most 300 lines, links that lead somewhere).

use std::collections::BTreeSet;

use crate::common::BIN;

const COMMANDS: [&str; 8] = [
    "",
    "serve-mock",
    "demo",
    "selftest",
    "plot",
    "compare",
    "merge",
    "k8s-manifest",
];

fn docs_text() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
    let mut text = String::new();
    for e in std::fs::read_dir(dir).expect("docs/ exists") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            text.push_str(&std::fs::read_to_string(&p).unwrap());
            text.push('\n');
        }
    }
    text
}

/// The `--flags` a help text names.
fn flags(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in help.match_indices("--") {
        let name: String = help[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name.len() > 1 && name != "help" && name != "version" {
            out.insert(format!("--{name}"));
        }
    }
    out
}

/// Whether `flag` appears in `text` as a whole flag (not the start of a longer one).
fn mentions(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        !text[i + flag.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn every_flag_of_every_command_is_in_docs() {
    let docs = docs_text();
    let (mut missing, mut seen) = (Vec::new(), 0);
    for cmd in COMMANDS {
        let mut c = std::process::Command::new(BIN);
        if !cmd.is_empty() {
            c.arg(cmd);
        }
        let out = c.arg("--help").output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let found = flags(&help);
        seen += found.len();
        for f in found {
            if !mentions(&docs, &f) {
                missing.push(format!(
                    "{} {f}",
                    if cmd.is_empty() { "qpsbench" } else { cmd }
                ));
            }
        }
    }
    assert!(seen > 60, "only {seen} flags read from the help texts");
    assert!(missing.is_empty(), "not in docs/: {missing:?}");
}

#[test]
fn the_readme_is_short_and_its_links_lead_somewhere() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    assert!(readme.lines().count() <= 300, "README.md is over 300 lines");
    let top: String = readme.lines().take(15).collect::<Vec<_>>().join("\n");
    assert!(top.contains("cargo run --release -- demo") && top.contains("cargo test"));
    for (i, _) in readme.match_indices("](") {
        let target: String = readme[i + 2..].chars().take_while(|c| *c != ')').collect();
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        let path = target.split('#').next().unwrap();
        assert!(
            std::path::Path::new(root).join(path).exists(),
            "README links to a missing {path}"
        );
    }
}
