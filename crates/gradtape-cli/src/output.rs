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

/// Files being prepared in one output folder. Nothing in the folder changes until
/// [`Staging::commit`], and a commit that fails puts back what was there: a failed run leaves the
/// folder exactly as it found it (a folder this run created is removed again).
pub struct Staging {
    dir: PathBuf,
    created_dir: bool,
    committed: bool,
    staged: Vec<(PathBuf, PathBuf)>,
}

impl Staging {
    /// Makes (or checks) the folder the files go to, before any work: the folder must be
    /// writable and none of `names` (the files the run will write) may be a folder.
    pub fn new(dir: &Path, names: &[&str]) -> Result<Staging, CliError> {
        let existed = dir.is_dir();
        if dir.exists() && !existed {
            return Err(CliError(format!(
                "--out {}: exists and is not a folder",
                dir.display()
            )));
        }
        for name in names {
            let target = dir.join(name);
            if target.is_dir() {
                return Err(CliError(format!(
                    "{}: is a folder, so the {name} this run writes cannot go there",
                    target.display()
                )));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError(format!(
                "--out {}: cannot create the folder: {e}",
                dir.display()
            ))
        })?;
        let stage = Staging {
            dir: dir.to_path_buf(),
            created_dir: !existed,
            committed: false,
            staged: vec![],
        };
        // Found now, not after the training: a folder we may not write to.
        let probe = dir.join(format!(".tmp-{}-probe", std::process::id()));
        std::fs::write(&probe, b"")
            .map_err(|e| CliError(format!("--out {}: cannot write there: {e}", dir.display())))?;
        let _ = std::fs::remove_file(&probe);
        Ok(stage)
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

    /// Renames every staged file into place; returns the final paths. Files it replaces are
    /// moved aside first and deleted only once every rename has worked; if one fails, the new
    /// files are removed and the old ones put back.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, CliError> {
        let mut aside: Vec<(PathBuf, PathBuf)> = vec![];
        let mut placed: Vec<PathBuf> = vec![];
        let mut failure = None;
        for (i, (tmp, target)) in self.staged.iter().enumerate() {
            let fail =
                |e: std::io::Error| CliError(format!("{}: cannot write: {e}", target.display()));
            if target.is_dir() {
                failure = Some(CliError(format!(
                    "{}: is a folder, so the file this run writes cannot go there",
                    target.display()
                )));
                break;
            }
            if target.symlink_metadata().is_ok() {
                let old = self.dir.join(format!(".old-{}-{i}", std::process::id()));
                if let Err(e) = std::fs::rename(target, &old) {
                    failure = Some(fail(e));
                    break;
                }
                aside.push((old, target.clone()));
            }
            if let Err(e) = std::fs::rename(tmp, target) {
                failure = Some(fail(e));
                break;
            }
            placed.push(target.clone());
        }
        if let Some(e) = failure {
            for target in placed.iter().rev() {
                let _ = std::fs::remove_file(target);
            }
            for (old, target) in aside.iter().rev() {
                let _ = std::fs::rename(old, target);
            }
            return Err(e); // Drop removes the temporary files (and a folder this run made)
        }
        for (old, _) in &aside {
            let _ = std::fs::remove_file(old);
        }
        self.committed = true;
        Ok(placed)
    }
}

impl Drop for Staging {
    /// Unless committed: the temporary files are removed, and the folder too when this run
    /// made it.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for (tmp, _) in &self.staged {
            let _ = std::fs::remove_file(tmp);
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// The folder and file name of an output file given by an option (`--out`, `--tape-dot`),
/// refusing a path that is a folder.
pub fn split_file_path<'a>(
    path: &'a Path,
    option: &str,
    example: &str,
) -> Result<(&'a Path, &'a str), CliError> {
    if path.is_dir() {
        return Err(CliError(format!(
            "{option} {}: is a folder; give a file name (such as {})",
            path.display(),
            path.join(example).display()
        )));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError(format!("{option} {}: not a file name", path.display())))?;
    Ok((dir, name))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).ok())
            })
            .collect();
        v.sort();
        v
    }

    /// The bug of issue 10: a rename failing half-way left temporary files and some new files
    /// beside the old ones. Now the folder is as it was.
    #[test]
    fn a_commit_that_fails_half_way_puts_the_folder_back() {
        let dir = std::env::temp_dir().join(format!("gradtape-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), b"old a").unwrap();
        std::fs::write(dir.join("keep.txt"), b"untouched").unwrap();
        let before = listing(&dir);
        let mut stage = Staging::new(&dir, &["a.txt", "b.txt", "c.txt"]).unwrap();
        stage.write("a.txt", b"new a").unwrap();
        stage.write("b.txt", b"new b").unwrap();
        stage.write("c.txt", b"new c").unwrap();
        // c.txt becomes a folder after the checks: its rename must fail.
        std::fs::create_dir(dir.join("c.txt")).unwrap();
        let e = stage.commit().unwrap_err();
        assert!(e.0.contains("c.txt"), "{}", e.0);
        std::fs::remove_dir(dir.join("c.txt")).unwrap();
        assert_eq!(listing(&dir), before);

        let mut stage = Staging::new(&dir, &["a.txt"]).unwrap();
        stage.write("a.txt", b"new a").unwrap();
        stage.commit().unwrap();
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"new a");
        assert_eq!(listing(&dir).len(), 2, "no temporary or old files left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_that_fails_before_committing_removes_the_folder_it_made() {
        let dir = std::env::temp_dir().join(format!("gradtape-stage-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut stage = Staging::new(&dir, &["x.txt"]).unwrap();
        stage.write("x.txt", b"x").unwrap();
        drop(stage);
        assert!(!dir.exists());
    }
}
