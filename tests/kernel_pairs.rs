//! The table in `src/gpu/kernels.rs`'s module docs pairs every WGSL entry point with the Rust function that records
//! it, its CPU twin and its parity test. This walks the table against the sources: every `@compute` entry point in
//! `shaders/` has a row and every row an entry point; the recording function exists and names its entry point; the
//! CPU twin exists; the parity test exists in `tests/gpu_kernels.rs` and calls the recording function.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Row {
    shader: String,
    entry: String,
    recorded_by: String,
    cpu_twin: String,
    test: String,
}

/// The table's rows, from the `//! |` lines after its header.
fn table() -> Vec<Row> {
    let docs = read(&root().join("src/gpu/kernels.rs"));
    let strip = |cell: &str| cell.trim().trim_matches('`').to_string();
    docs.lines()
        .filter_map(|l| l.strip_prefix("//! |"))
        .map(|l| l.trim_end().trim_end_matches('|').split('|').map(strip).collect::<Vec<_>>())
        .filter(|cells| cells.len() == 5 && cells[0] != "shader" && !cells[0].starts_with("---"))
        .map(|c| Row {
            // "matmul_tiles.wgsl (matmul)": the file is the first word.
            shader: c[0].split_whitespace().next().unwrap().to_string(),
            entry: c[1].clone(),
            recorded_by: c[2].clone(),
            cpu_twin: c[3].clone(),
            test: c[4].clone(),
        })
        .collect()
}

/// Every (shader file, entry point) declared with `@compute` in `shaders/`.
fn entry_points() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for f in std::fs::read_dir(root().join("shaders")).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let source = read(&path);
        let mut compute = false;
        for line in source.lines() {
            if line.trim_start().starts_with("@compute") {
                compute = true;
            }
            if compute {
                if let Some(rest) = line.trim_start().strip_prefix("fn ") {
                    out.insert((name.clone(), rest.split('(').next().unwrap().trim().to_string()));
                    compute = false;
                }
            }
        }
    }
    out
}

/// The body of `fn name` in `source` (to the next line that starts a top-level item), if there is one.
fn body<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = [format!("fn {name}("), format!("fn {name}<")].iter().find_map(|p| source.find(p.as_str()))?;
    let rest = &source[start..];
    let end = rest[1..].find("\n#[").or_else(|| rest[1..].find("\nfn ")).map_or(rest.len(), |e| e + 1);
    Some(&rest[..end])
}

/// The `src/` file of a module path such as `cpu::layers` (`src/cpu/layers.rs` or `src/cpu/layers/mod.rs`).
fn module_file(path: &[&str]) -> PathBuf {
    let base = root().join("src").join(path.join("/"));
    let file = base.with_extension("rs");
    if file.exists() {
        file
    } else {
        base.join("mod.rs")
    }
}

#[test]
fn every_entry_point_is_paired_with_its_cpu_twin_and_a_parity_test() {
    let rows = table();
    assert!(rows.len() >= 20, "the table in src/gpu/kernels.rs was not found ({} rows)", rows.len());
    let declared = entry_points();
    let listed: BTreeSet<(String, String)> = rows.iter().map(|r| (r.shader.clone(), r.entry.clone())).collect();
    let unlisted: Vec<_> = declared.difference(&listed).collect();
    assert!(unlisted.is_empty(), "entry points without a row in src/gpu/kernels.rs: {unlisted:?}");
    let stale: Vec<_> = listed.difference(&declared).collect();
    assert!(stale.is_empty(), "rows naming entry points that no shader declares: {stale:?}");

    let gpu_sources: Vec<(PathBuf, String)> = std::fs::read_dir(root().join("src/gpu"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .map(|p| (p.clone(), read(&p)))
        .collect();
    let tests = read(&root().join("tests/gpu_kernels.rs"));
    for r in &rows {
        let what = format!("{} {}", r.shader, r.entry);
        // The recording function: `Type::method`, defined in src/gpu, in a file that names the entry point.
        let (ty, method) = r.recorded_by.split_once("::").unwrap_or_else(|| panic!("{what}: {}", r.recorded_by));
        let (file, _) = gpu_sources
            .iter()
            .find(|(_, s)| s.contains(&format!("impl {ty} {{")) && body(s, method).is_some())
            .unwrap_or_else(|| panic!("{what}: no {ty}::{method} in src/gpu"));
        let source = read(file);
        assert!(source.contains(&format!("\"{}\"", r.entry)), "{what}: {} never names the entry point", file.display());

        // The CPU twin: a function (or a type's method) in the module the path names.
        let parts: Vec<&str> = r.cpu_twin.split("::").collect();
        let (func, owner) = (parts[parts.len() - 1], parts[..parts.len() - 1].to_vec());
        let (module, ty) = match owner.last() {
            Some(t) if t.starts_with(char::is_uppercase) => (owner[..owner.len() - 1].to_vec(), Some(*t)),
            _ => (owner, None),
        };
        let twin = read(&module_file(&module));
        assert!(body(&twin, func).is_some(), "{what}: CPU twin {} not found", r.cpu_twin);
        if let Some(t) = ty {
            assert!(twin.contains(&format!("impl {t} {{")), "{what}: CPU twin type {t} not found");
        }

        // The parity test: a #[test] in tests/gpu_kernels.rs that records the entry point (itself or through a
        // helper it calls).
        let test = body(&tests, &r.test).unwrap_or_else(|| panic!("{what}: parity test {} not found", r.test));
        assert!(tests.contains(&format!("#[test]\nfn {}(", r.test)), "{what}: {} is not a #[test]", r.test);
        let call = format!(".{method}(");
        let helpers_call = tests
            .match_indices("\nfn ")
            .filter_map(|(i, _)| tests[i + 4..].split('(').next())
            .filter(|h| *h != r.test && test.contains(&format!("{h}(")))
            .any(|h| body(&tests, h).is_some_and(|b| b.contains(&call)));
        assert!(test.contains(&call) || helpers_call, "{what}: {} never calls {method}", r.test);
    }
}
