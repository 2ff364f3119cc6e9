//! The library's layout (issue 9): no import cycles between its modules, and no file much
//! over 400 lines. Both read the sources, so a change that breaks them fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use capy_tests::workspace_root;

/// Files larger than this are split (the "no file over ~400 lines").
const MAX_LINES: usize = 400;

fn library_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&workspace_root().join("shared/src"), &mut out);
    // Test-only files (`tests.rs` submodules, the consumers' test kit) are not the library.
    out.retain(|p| !p.ends_with("tests.rs") && !p.ends_with("testkit.rs"));
    out.sort();
    out
}

/// `shared/src/a/b.rs` → `a::b`; `a/mod.rs` → `a`; `lib.rs` → ``.
fn module_of(path: &Path) -> String {
    let rel = path
        .strip_prefix(workspace_root().join("shared/src"))
        .expect("under shared/src")
        .with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "mod" && c != "lib")
        .collect();
    parts.join("::")
}

/// Every `crate::…` path a file mentions, cut to the longest module of the library.
fn dependencies(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        for n in (1..=segments.len()).rev() {
            let candidate = segments[..n].join("::");
            if modules.contains(&candidate) {
                deps.insert(candidate);
                break;
            }
        }
    }
    deps
}

/// The module graph, test modules excluded (a `#[cfg(test)]` tail may use anything).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = library_files();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            // Code only: no test module, no comments (a doc link is not an import).
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let code = code.as_str();
            let me = module_of(f);
            let mut deps = dependencies(code, &modules);
            // A module may use its own children and its parents' items freely; a cycle is
            // between siblings or cousins.
            deps.retain(|d| {
                d != &me && !d.starts_with(&format!("{me}::")) && !me.starts_with(&format!("{d}::"))
            });
            (me, deps)
        })
        .collect()
}

/// Modules at one depth: `domain::health` at depth 1 is `domain`.
fn collapse(
    g: &BTreeMap<String, BTreeSet<String>>,
    depth: usize,
) -> BTreeMap<String, BTreeSet<String>> {
    let cut = |m: &str| m.split("::").take(depth).collect::<Vec<_>>().join("::");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in g {
        let entry = out.entry(cut(m)).or_default();
        for d in deps {
            if cut(d) != cut(m) {
                entry.insert(cut(d));
            }
        }
    }
    out
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_finder_finds_a_planted_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn no_import_cycles_between_the_librarys_modules() {
    let g = graph();
    assert!(
        g.contains_key("domain::health") && g.contains_key("services"),
        "{:?}",
        g.keys()
    );
    // Between files, and between the top-level folders the README describes.
    assert_eq!(find_cycle(&g), None, "an import cycle between files");
    let top = collapse(&g, 1);
    assert_eq!(
        find_cycle(&top),
        None,
        "an import cycle between top-level modules"
    );
    // The rules stay pure: the domain depends on nothing else of the library.
    assert_eq!(
        top.get("domain"),
        Some(&BTreeSet::new()),
        "domain imports {:?}",
        top.get("domain")
    );
    for (m, deps) in &top {
        println!(
            "{m:>10} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
}

#[test]
fn no_library_file_is_much_over_400_lines() {
    let mut sizes: Vec<(usize, String)> = library_files()
        .iter()
        .map(|f| {
            let lines = std::fs::read_to_string(f).expect("read").lines().count();
            (lines, module_of(f))
        })
        .collect();
    sizes.sort();
    let (largest, name) = sizes.last().cloned().expect("files");
    println!("largest library file: {name} ({largest} lines)");
    let over: Vec<_> = sizes.iter().filter(|(n, _)| *n > MAX_LINES).collect();
    assert!(over.is_empty(), "over {MAX_LINES} lines: {over:?}");
}
