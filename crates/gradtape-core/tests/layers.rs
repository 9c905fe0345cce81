//! The layers of the core, read from its own `use` lines (ARCHITECTURE.md, "Layers inside the
//! core"): the backends (`src/backend/`) import nothing from the front end, so they never see
//! a `Tensor`; their modules import each other without a cycle; and `#[cfg(feature = "cuda")]`
//! appears at the backend boundary only (and on the crate root's re-export of `cuda`).
//!
//! A source-level check, on purpose: the compiler accepts any import within a crate, so only
//! reading the imports can hold the layering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a backend file may name outside the backend: the bottom layer.
const BELOW_THE_BACKENDS: [&str; 3] = ["dtype", "shape", "error"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments (line comments, doc comments included).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names from the crate root: `crate::a::b` gives `["a", "b"]`, and
/// `crate::{a::b, c}` gives both.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    let mut out = vec![];
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, split at depth-0 commas.
            let (mut depth, mut start) = (0, 0);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(&group[start..j]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(&group[start..j]));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// The backend module a file under `src/backend/` belongs to (`mod.rs` is the boundary,
/// `backend`).
fn backend_module(path: &Path) -> String {
    let rel = path
        .strip_prefix(src().join("backend"))
        .expect("a backend file");
    let first = rel.iter().next().expect("a file").to_string_lossy();
    match first.strip_suffix(".rs") {
        Some("mod") => "backend".into(),
        Some(m) => m.into(),
        None => first.into_owned(),
    }
}

/// A cycle of `edges` (`a -> b`: `a` imports from `b`), if there is one, as the modules along
/// it with the first repeated at the end.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for t in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut state, &mut vec![]))
}

fn backend_files() -> Vec<PathBuf> {
    let mut files = vec![];
    rust_files(&src().join("backend"), &mut files);
    assert!(files.len() >= 8, "the backend files were not found");
    files
}

#[test]
fn the_backends_import_nothing_from_the_front_end() {
    let mut offences = vec![];
    for f in backend_files() {
        for p in crate_paths(&code(&f)) {
            if p[0] != "backend" && !BELOW_THE_BACKENDS.contains(&p[0].as_str()) {
                offences.push(format!("{}: crate::{}", f.display(), p.join("::")));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "backends work on storage and layouts; they may use {BELOW_THE_BACKENDS:?} and each \
         other only:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_backend_modules_import_each_other_without_a_cycle() {
    let files = backend_files();
    let modules: BTreeSet<String> = files.iter().map(|f| backend_module(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = backend_module(f);
        let code = code(f);
        let mut targets = vec![];
        for p in crate_paths(&code) {
            if p[0] == "backend" {
                // `crate::backend::cpu::...` is the module `cpu`; `crate::backend::Item` is
                // the boundary itself.
                match p.get(1) {
                    Some(m) if modules.contains(m) => targets.push(m.clone()),
                    _ => targets.push("backend".into()),
                }
            }
        }
        // A sibling named through `super::` from a file directly under `src/backend/`, or a
        // submodule named by its own name from the boundary.
        if f.parent() == Some(&src().join("backend")) {
            for m in &modules {
                let relative = if from == "backend" {
                    format!("{m}::")
                } else {
                    format!("super::{m}")
                };
                let named = code.match_indices(&relative).any(|(i, _)| {
                    !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                        || from != "backend"
                });
                if named {
                    targets.push(m.clone());
                }
            }
        }
        for t in targets {
            if t != from {
                edges.entry(from.clone()).or_default().insert(t);
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle among the backends: {}", cycle.join(" -> "));
    }
    // The boundary sits on top: it uses the backends, and none of them uses it.
    for (from, to) in &edges {
        assert!(
            from == "backend" || !to.contains("backend"),
            "{from} imports from the boundary (backend/mod.rs), which is above it"
        );
    }
    assert!(
        edges.get("backend").is_some_and(|t| t.contains("storage")),
        "the graph was not read: the boundary must use the storage ({edges:?})"
    );
}

#[test]
fn the_cuda_feature_appears_at_the_boundary_only() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let mut offences = vec![];
    for f in files {
        let inside = f.starts_with(src().join("backend")) || f == src().join("lib.rs");
        if !inside && code(&f).contains("feature = \"cuda\"") {
            offences.push(f.display().to_string());
        }
    }
    assert!(
        offences.is_empty(),
        "`cfg(feature = \"cuda\")` outside src/backend/ (the front end calls the boundary, \
         which answers for every build): {offences:?}"
    );
}

#[test]
fn the_import_reader_reads_imports() {
    let code =
        "use crate::{backend::cpu::{self, X}, dtype::DType};\nlet y = crate::tensor::Tensor::f();";
    assert_eq!(
        crate_paths(code),
        vec![
            vec!["backend".to_string(), "cpu".into()],
            vec!["dtype".into(), "DType".into()],
            vec!["tensor".into(), "Tensor".into(), "f".into()],
        ]
    );
}

/// Directories whose files make one layer together, read as one module: the ops (each file a
/// family of them, calling each other freely), the per-thread context (the thread-local and
/// the state of each transformation it holds) and the backends (layered inside by the test
/// above). Every other file is a module of its own, so `tensor/mod.rs` (the type, below the
/// context) and `tensor/creation.rs` (creation on the default device, above it) are two.
const ONE_LAYER: [&str; 3] = ["ops", "context", "backend"];

/// The module a file of `src/` is, as a path (`tensor::creation`, `ops`, `record`).
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src()).expect("a file of src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if ONE_LAYER.contains(&parts[0].as_str()) {
        parts.truncate(1);
    }
    parts
}

/// Which modules each module of the core imports from: `crate::` paths (to the longest module
/// they name), `super::` from a file below a directory's `mod.rs` (to the sibling it names, or
/// to the parent), and a `mod.rs` naming its own child modules.
fn core_imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    files.retain(|f| f != &src().join("lib.rs"));
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let longest = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|m| modules.contains(m))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(f);
        let code = code(f);
        let mut targets: Vec<Vec<String>> = crate_paths(&code)
            .iter()
            .filter_map(|p| longest(p))
            .collect();
        let own_directory = !ONE_LAYER.contains(&from[0].as_str());
        if own_directory && from.len() > 1 && code.contains("super::") {
            let parent = from[..from.len() - 1].to_vec();
            let sibling = |name: &str| {
                let mut s = parent.clone();
                s.push(name.to_string());
                modules.contains(&s).then_some(s)
            };
            for piece in code.split("super::").skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                targets.push(sibling(&name).unwrap_or_else(|| parent.clone()));
            }
        }
        if own_directory {
            for m in modules
                .iter()
                .filter(|m| m.len() == from.len() + 1 && m.starts_with(&from))
            {
                let child = format!("{}::", m[from.len()]);
                if code.split(&child).count() > 1 {
                    targets.push(m.clone());
                }
            }
        }
        for t in targets {
            if t != from {
                edges
                    .entry(from.join("::"))
                    .or_default()
                    .insert(t.join("::"));
            }
        }
    }
    edges
}

#[test]
fn the_core_has_no_import_cycle() {
    let edges = core_imports();
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "import cycle in the core: {} (ARCHITECTURE.md, \"Layers inside the core\", says \
             which module sits above which)",
            cycle.join(" -> ")
        );
    }
    // The graph was read: the edges the layering rests on are there.
    let has = |a: &str, b: &str| edges.get(a).is_some_and(|t| t.contains(b));
    for (a, b) in [
        ("ops", "context"),
        ("ops", "primitive"),
        ("context", "tensor"),
        ("record", "ops"),
        ("tape", "record"),
        ("tensor::creation", "tensor"),
        ("variable::access", "record"),
    ] {
        assert!(has(a, b), "{a} should import from {b}: {edges:?}");
    }
}
