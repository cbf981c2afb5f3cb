//! The folder tree is the architecture: every `crate::` path in `src/` must
//! point to a module of the same layer or a lower one (the order is the list
//! under "# Layers" in `src/lib.rs`), and no two modules may use each other,
//! directly or through others.
//!
//! Paths are resolved to the file that defines the item: `crate::model::Model`
//! names `model/transformer.rs` when `model/mod.rs` re-exports it from there,
//! so a `mod.rs` that only declares and re-exports is no node of its own.
//! Comments are ignored; the binary (`src/bin/`) and the facade `lib.rs` sit
//! above every layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The source files under `src/` (lib side) as (module path, text):
/// `src/model/transformer.rs` → `model::transformer`, `src/model/mod.rs` → `model`.
fn library_sources(src: &Path) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
            if path.is_dir() {
                if rel != "bin" {
                    stack.push(path);
                }
            } else if rel.ends_with(".rs") && rel != "lib.rs" {
                let module = rel.trim_end_matches(".rs").trim_end_matches("/mod").replace('/', "::");
                out.push((module, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The layer names in order, from the "# Layers" list of `lib.rs` (`//! 3. `data` — …`).
fn layers(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter_map(|l| {
            let (number, rest) = l.split_once(". `")?;
            number.parse::<usize>().ok()?;
            Some(rest.split('`').next()?.to_string())
        })
        .collect()
}

/// The text without comments (line comments and doc comments; `//` inside a
/// string literal is kept).
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_string = false;
        let mut cut = line.len();
        let bytes = line.as_bytes();
        for i in 0..bytes.len() {
            match bytes[i] {
                b'"' if i == 0 || bytes[i - 1] != b'\\' => in_string = !in_string,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Every path that follows `prefix` (e.g. `crate::`), with brace groups
/// expanded: `crate::model::{Model, checkpoint::save}` gives
/// `model::Model` and `model::checkpoint::save`.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before_ok = i == 0 || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        rest = &rest[i + prefix.len()..];
        if !before_ok {
            continue;
        }
        let end = path_end(rest);
        expand(&rest[..end], "", &mut out);
    }
    out
}

/// Length of the path text at the start of `s` (identifiers, `::`, balanced braces).
fn path_end(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            c if c.is_alphanumeric() || c == '_' || c == ':' || c == '*' => {}
            ',' | ' ' | '\n' if depth > 0 => {}
            _ if depth == 0 => return i,
            _ => {}
        }
    }
    s.len()
}

fn expand(text: &str, base: &str, out: &mut Vec<String>) {
    let text = text.trim();
    match text.find('{') {
        None => {
            let p = text.trim_end_matches("::");
            if !p.is_empty() {
                out.push(if base.is_empty() { p.to_string() } else { format!("{base}::{p}") });
            }
        }
        Some(open) => {
            let head = text[..open].trim_end_matches("::");
            let base = match (base.is_empty(), head.is_empty()) {
                (_, true) => base.to_string(),
                (true, false) => head.to_string(),
                (false, false) => format!("{base}::{head}"),
            };
            let inner = &text[open + 1..text.rfind('}').unwrap_or(text.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&inner[start..i], &base, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&inner[start..], &base, out);
        }
    }
}

/// The module graph: module → the modules it uses (resolved through re-exports).
struct Graph {
    modules: BTreeSet<String>,
    reexports: BTreeMap<(String, String), String>, // (module, item) → path it re-exports
    uses: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn new(sources: &[(String, String)]) -> Graph {
        let modules: BTreeSet<String> = sources.iter().map(|(m, _)| m.clone()).collect();
        let mut reexports = BTreeMap::new();
        let mut raw_uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (module, text) in sources {
            let code = code(text);
            let mut paths = paths_after(&code, "crate::");
            // A `mod.rs` that uses its children by relative paths (`use child::X`).
            for line in code.lines().map(str::trim) {
                let Some(rest) = ["pub use ", "pub(crate) use ", "use "].iter().find_map(|p| line.strip_prefix(p))
                else {
                    continue;
                };
                let is_child = |p: &str| modules.contains(&format!("{module}::{}", p.split("::").next().unwrap_or("")));
                let mut local = vec![];
                expand(rest.trim_end_matches(';'), "", &mut local);
                for p in local.into_iter().filter(|p| is_child(p)) {
                    let full = format!("{module}::{p}");
                    if line.starts_with("pub") {
                        let item = full.rsplit("::").next().unwrap().to_string();
                        reexports.insert((module.clone(), item), full.clone());
                    }
                    paths.push(full);
                }
                if line.starts_with("pub") {
                    let mut absolute = vec![];
                    if let Some(p) = rest.strip_prefix("crate::") {
                        expand(p.trim_end_matches(';'), "", &mut absolute);
                    }
                    for full in absolute {
                        let item = full.rsplit("::").next().unwrap().to_string();
                        reexports.insert((module.clone(), item), full);
                    }
                }
            }
            raw_uses.insert(module.clone(), paths);
        }
        let mut graph = Graph { modules, reexports, uses: BTreeMap::new() };
        for (module, paths) in raw_uses {
            let targets = paths.iter().filter_map(|p| graph.resolve(p)).filter(|t| *t != module).collect();
            graph.uses.insert(module, targets);
        }
        graph
    }

    /// The module that defines what `path` names (`None` for paths outside the tree, e.g. macros).
    fn resolve(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split("::").collect();
        let n = (1..=segments.len()).rev().find(|&n| self.modules.contains(&segments[..n].join("::")))?;
        let module = segments[..n].join("::");
        match segments.get(n) {
            Some(item) => match self.reexports.get(&(module.clone(), item.to_string())) {
                Some(target) if target != path => self.resolve(&format!("{target}{}", rest(&segments, n + 1))),
                _ => Some(module),
            },
            None => Some(module),
        }
    }
}

fn rest(segments: &[&str], from: usize) -> String {
    segments[from.min(segments.len())..].iter().map(|s| format!("::{s}")).collect()
}

/// Every violation of the layer order and every cycle, in words.
fn violations(sources: &[(String, String)], layers: &[String]) -> Vec<String> {
    let graph = Graph::new(sources);
    let layer_of = |m: &str| layers.iter().position(|l| l == m.split("::").next().unwrap());
    let mut out = vec![];
    for module in &graph.modules {
        if layer_of(module).is_none() {
            out.push(format!("`{module}` is in no layer of lib.rs's list"));
        }
    }
    for (module, targets) in &graph.uses {
        for target in targets {
            if let (Some(from), Some(to)) = (layer_of(module), layer_of(target))
                && to > from
            {
                out.push(format!(
                    "`{module}` (layer {} `{}`) uses `{target}` of a higher layer ({} `{}`)",
                    from + 1,
                    layers[from],
                    to + 1,
                    layers[to]
                ));
            }
        }
    }
    out.extend(cycles(&graph.uses).into_iter().map(|c| format!("cycle: {}", c.join(" → "))));
    out
}

/// One cycle per strongly connected group found by depth-first search.
fn cycles(uses: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        m: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        marks.insert(m.to_string(), Mark::Open);
        stack.push(m.to_string());
        for t in uses.get(m).into_iter().flatten() {
            match marks.get(t).copied().unwrap_or(Mark::New) {
                Mark::New => visit(t, uses, marks, stack, found),
                Mark::Open => {
                    let start = stack.iter().position(|s| s == t).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(t.clone());
                    found.push(cycle);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(m.to_string(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = vec![];
    for m in uses.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New {
            visit(m, uses, &mut marks, &mut vec![], &mut found);
        }
    }
    found
}

#[test]
fn imports_only_point_down_the_layers_and_never_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let layers = layers(&lib);
    assert!(layers.len() >= 10, "the layer list in lib.rs was not found: {layers:?}");
    let sources = library_sources(&root.join("src"));
    let found = violations(&sources, &layers);
    assert!(found.is_empty(), "the architecture is broken:\n  {}", found.join("\n  "));
}

/// The checker itself, on a planted tree: it must see an upward import, a
/// cycle through re-exports, and a module outside every layer.
#[test]
fn the_checker_catches_planted_violations() {
    let layers: Vec<String> = ["util", "physics", "model"].map(String::from).to_vec();
    let tree = |files: &[(&str, &str)]| -> Vec<(String, String)> {
        files.iter().map(|(m, t)| (m.to_string(), t.to_string())).collect()
    };
    let clean = tree(&[
        ("util", "pub mod mat;\npub use mat::Mat;"),
        ("util::mat", "pub struct Mat;"),
        ("physics", "use crate::util::Mat; // crate::model::Model in a comment is fine"),
        ("model", "mod a;\nmod b;\npub use a::A;\nuse crate::physics::X;"),
        ("model::a", "use crate::model::b::B;\npub struct A;"),
        ("model::b", "use crate::util::{mat::Mat, Mat as M};\npub struct B;"),
    ]);
    assert_eq!(violations(&clean, &layers), Vec::<String>::new());

    let upward = tree(&[("util", "fn f() { let _ = crate::physics::step(); }"), ("physics", "")]);
    let found = violations(&upward, &layers);
    assert!(found.len() == 1 && found[0].contains("`util` (layer 1 `util`) uses `physics`"), "{found:?}");

    // `model::b` reaches `model::a` through the re-export in `model`.
    let cycle = tree(&[
        ("model", "mod a;\nmod b;\npub use a::A;"),
        ("model::a", "use crate::model::b::B;\npub struct A;"),
        ("model::b", "use crate::model::{A};\npub struct B;"),
    ]);
    let found = violations(&cycle, &layers);
    assert!(found.len() == 1 && found[0].starts_with("cycle: model::a → model::b → model::a"), "{found:?}");

    let stray = tree(&[("plots", "")]);
    assert_eq!(violations(&stray, &layers), ["`plots` is in no layer of lib.rs's list"]);
}
