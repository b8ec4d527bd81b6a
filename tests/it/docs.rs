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

/// Every file path the docs (and the README) name under `src/`, `tests/`, `benches/`, `fuzz/`,
/// `scripts/`, `deploy/` or `docs/` exists, so a move cannot leave a doc pointing nowhere.
#[test]
fn every_path_the_docs_name_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = docs_text();
    text.push_str(&std::fs::read_to_string(root.join("README.md")).unwrap());
    let mut named = BTreeSet::new();
    for prefix in [
        "src/", "tests/", "benches/", "fuzz/", "scripts/", "deploy/", "docs/",
    ] {
        for (i, _) in text.match_indices(prefix) {
            // A path starts the word: not `rc/` inside `src/`, nor part of a URL.
            let before = text[..i].chars().next_back().unwrap_or(' ');
            if before.is_ascii_alphanumeric() || matches!(before, '/' | '.' | '-' | '_') {
                continue;
            }
            let path: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
                .collect();
            let path = path.trim_end_matches(['.', '-']);
            named.insert(path.to_string());
        }
    }
    // Made by a tool when it has something to say: cargo fuzz writes a crash's input there.
    let made_later = ["fuzz/artifacts/"];
    let missing: Vec<_> = named
        .iter()
        .filter(|p| !made_later.contains(&p.as_str()) && !root.join(p).exists())
        .collect();
    assert!(
        named.len() > 40,
        "only {} paths read: {named:?}",
        named.len()
    );
    assert!(
        missing.is_empty(),
        "docs name paths that do not exist: {missing:?}"
    );
}

/// Every module path of the code map (`docs/architecture.md`, in backticks, from a folder of
/// `src/`: `engine::dispatch::dispatch_due`) leads to a module file, then at most to an item that
/// the file names: the map follows the tree.
#[test]
fn the_code_map_follows_the_tree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let top: BTreeSet<String> = std::fs::read_dir(root.join("src"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.file_type()
                .unwrap()
                .is_dir()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    let (mut checked, mut wrong) = (0, Vec::new());
    for quoted in map.split('`').skip(1).step_by(2) {
        let path: String = quoted
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_'))
            .collect();
        let segments: Vec<&str> = path.split("::").collect();
        if segments.len() < 2 || !top.contains(segments[0]) {
            continue;
        }
        checked += 1;
        if let Err(why) = resolve(&root.join("src"), &segments) {
            wrong.push(format!("`{quoted}`: {why}"));
        }
    }
    assert!(checked > 50, "only {checked} module paths in the code map");
    assert!(
        wrong.is_empty(),
        "the code map names what the tree lacks: {wrong:#?}"
    );
}

/// Walks `segments` down the module tree from `dir`: folders and files, then one item (a type,
/// a function, a constant) that the last module file names, then anything (its methods).
fn resolve(dir: &std::path::Path, segments: &[&str]) -> Result<(), String> {
    let mut dir = dir.to_path_buf();
    let mut file = None;
    for (i, s) in segments.iter().enumerate() {
        if s.is_empty() {
            return Err("an empty segment".into());
        }
        let (as_dir, as_file) = (dir.join(s), dir.join(format!("{s}.rs")));
        if as_dir.join("mod.rs").is_file() {
            file = Some(as_dir.join("mod.rs"));
            dir = as_dir;
        } else if as_file.is_file() {
            file = Some(as_file);
            dir = dir.join(s);
        } else {
            let Some(f) = &file else {
                return Err(format!("no module {s}"));
            };
            let text = std::fs::read_to_string(f).unwrap();
            let named = text.contains(&format!(" {s}("))
                || text.contains(&format!(" {s}<"))
                || text.contains(&format!(" {s} "))
                || text.contains(&format!(" {s}:"))
                || text.contains(&format!(" {s};"))
                || text.contains(&format!("{s}!"))
                || text.contains(&format!(" {s},"))
                || text.contains(&format!("{{{s}"))
                || text.contains(&format!(" {s}}}"));
            return if named {
                Ok(())
            } else {
                Err(format!("{} names no {s} (segment {})", f.display(), i + 1))
            };
        }
    }
    Ok(())
}
