//! Files are written under temporary names and renamed into place only when every one of them
//! has been written, so a failure never leaves a half-written output behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gradtape::{TracedOp, TracedTensor};

use crate::CliError;

/// A progress bar of `len` epochs when stdout is a terminal and lines are wanted; `None`
/// otherwise (then the caller prints lines, or nothing).
pub fn progress_bar(len: usize, lines: bool, template: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (lines && std::io::stdout().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(len as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    })
}

/// Files being prepared in one output folder.
pub struct Staging {
    dir: PathBuf,
    created_dir: bool,
    staged: Vec<(PathBuf, PathBuf)>,
}

impl Staging {
    /// Makes (or checks) the folder the files go to.
    pub fn new(dir: &Path) -> Result<Staging, CliError> {
        let existed = dir.is_dir();
        if dir.exists() && !existed {
            return Err(CliError(format!(
                "--out {}: exists and is not a folder",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError(format!(
                "--out {}: cannot create the folder: {e}",
                dir.display()
            ))
        })?;
        Ok(Staging {
            dir: dir.to_path_buf(),
            created_dir: !existed,
            staged: vec![],
        })
    }

    /// A temporary path for `name` in the folder (keeping its extension, which the picture
    /// encoders look at), to be renamed to `name` by [`Staging::commit`].
    pub fn path(&mut self, name: &str) -> PathBuf {
        let target = self.dir.join(name);
        let tmp = self.dir.join(format!(".tmp-{}-{name}", std::process::id()));
        self.staged.push((tmp.clone(), target));
        tmp
    }

    /// Writes `contents` as `name`.
    pub fn write(&mut self, name: &str, contents: &[u8]) -> Result<(), CliError> {
        let p = self.path(name);
        std::fs::write(&p, contents).map_err(|e| {
            CliError(format!(
                "{}: cannot write: {e}",
                self.dir.join(name).display()
            ))
        })
    }

    /// Renames every staged file into place; returns the final paths.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, CliError> {
        let mut done = vec![];
        for (tmp, target) in std::mem::take(&mut self.staged) {
            std::fs::rename(&tmp, &target)
                .map_err(|e| CliError(format!("{}: cannot write: {e}", target.display())))?;
            done.push(target);
        }
        Ok(done)
    }
}

impl Drop for Staging {
    /// Whatever was not committed is removed, and the folder too when this run made it.
    fn drop(&mut self) {
        for (tmp, _) in &self.staged {
            let _ = std::fs::remove_file(tmp);
        }
        if self.created_dir && !self.staged.is_empty() {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Short names for the tensors of a trace: the ones the caller knows by name, then t1, t2, ...
pub struct Names(HashMap<u64, String>);

impl Names {
    pub fn new(known: &[(u64, &str)]) -> Names {
        Names(known.iter().map(|&(id, n)| (id, n.to_string())).collect())
    }
    fn of(&mut self, t: &TracedTensor) -> String {
        if let Some(v) = &t.variable {
            return v.clone();
        }
        let next = self.0.len() + 1;
        self.0
            .entry(t.id)
            .or_insert_with(|| format!("t{next}"))
            .clone()
    }
}

fn shape(t: &TracedTensor) -> String {
    format!("{:?}", t.shape)
}

/// The `--explain` listing of one traced training step.
pub fn explain(trace: &[TracedOp], names: &mut Names, grads: &[(&str, f64)]) -> String {
    let mut s = format!(
        "What the tape recorded for one training step ({} operations):\n",
        trace.len()
    );
    s += &format!(
        "  {:>2}  {:<16} {:<36} {}\n",
        "#", "operation", "inputs", "output"
    );
    for (i, op) in trace.iter().enumerate() {
        let ins: Vec<String> = op
            .inputs
            .iter()
            .map(|t| format!("{} {}", names.of(t), shape(t)))
            .collect();
        let out = format!(
            "{} {} {}",
            names.of(&op.output),
            shape(&op.output),
            op.output.dtype
        );
        s += &format!(
            "  {:>2}  {:<16} {:<36} {}\n",
            i + 1,
            op.op,
            ins.join(", "),
            out
        );
    }
    let sources: Vec<&str> = grads.iter().map(|g| g.0).collect();
    s += &format!("Sources: {}\n", sources.join(", "));
    let gs: Vec<String> = grads
        .iter()
        .map(|(n, v)| format!("d{n} = {v:.6}"))
        .collect();
    s += &format!("Gradients returned: {}\n", gs.join(", "));
    s
}

/// The same step as a Graphviz graph: tensors as ellipses, operations as boxes.
pub fn dot(trace: &[TracedOp], names: &mut Names) -> String {
    let mut s = String::from("digraph tape {\n  rankdir=TB;\n  node [fontname=\"sans-serif\"];\n");
    let mut seen = std::collections::HashSet::new();
    let mut node = |s: &mut String, t: &TracedTensor, names: &mut Names| {
        if seen.insert(t.id) {
            let style = if t.variable.is_some() {
                ", style=filled, fillcolor=\"#ffe9a8\""
            } else {
                ""
            };
            s.push_str(&format!(
                "  t{} [label=\"{} {}\", shape=ellipse{style}];\n",
                t.id,
                names.of(t),
                shape(t)
            ));
        }
    };
    for (i, op) in trace.iter().enumerate() {
        for t in op.inputs.iter().chain([&op.output]) {
            node(&mut s, t, names);
        }
        s += &format!(
            "  op{i} [label=\"{}\", shape=box, style=filled, fillcolor=\"#d8e8ff\"];\n",
            op.op
        );
        for t in &op.inputs {
            s += &format!("  t{} -> op{i};\n", t.id);
        }
        s += &format!("  op{i} -> t{};\n", op.output.id);
    }
    s + "}\n"
}
