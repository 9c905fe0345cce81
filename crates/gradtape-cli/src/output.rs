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

/// Files being prepared for one output folder. Nothing in the folder changes until
/// [`Staging::commit`], and a commit that fails puts back what was there: a failed run leaves the
/// folder exactly as it found it.
///
/// Several files are written into a hidden sibling folder (`.NAME.gradtape-stage-PID`) that
/// replaces the output folder in one atomic rename (an exchange of the two folders on Linux,
/// with the folder's other entries hard-linked across first), so a run killed at any instant
/// leaves either all the previous outputs or all the new ones. One file is written under a
/// temporary name beside its final one and renamed over it, which is atomic by itself. Where a
/// folder swap is impossible (the folder is a mount point, or the system has no exchange), the
/// files are renamed into place one by one: each file is always whole, but a kill between two
/// renames leaves a mix. A later run removes what a killed run left behind.
pub struct Staging {
    dir: PathBuf,
    mode: Mode,
    committed: bool,
    staged: Vec<String>,
}

enum Mode {
    /// The new files go to `stage`, which becomes `target` in one rename.
    Swap { target: PathBuf, stage: PathBuf },
    /// The new files go beside their final names in the folder (made by this run if
    /// `created_dir`).
    InPlace { created_dir: bool },
}

/// The prefix of leftovers: `.tmp-PID-NAME` and `.old-PID-N` inside a folder, and
/// `.NAME.gradtape-stage-PID` beside it.
const STAGE_MARK: &str = ".gradtape-stage-";

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
        remove_leftovers(dir);
        if names.len() > 1 {
            if let Some(mode) = swap_plan(dir) {
                return Ok(Staging {
                    dir: dir.to_path_buf(),
                    mode,
                    committed: false,
                    staged: vec![],
                });
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
            mode: Mode::InPlace {
                created_dir: !existed,
            },
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

    /// Where to write `name` now (keeping its extension, which the picture encoders look
    /// at); [`Staging::commit`] puts it in place.
    pub fn path(&mut self, name: &str) -> PathBuf {
        self.staged.push(name.to_string());
        match &self.mode {
            Mode::Swap { stage, .. } => stage.join(name),
            Mode::InPlace { .. } => self.dir.join(temporary_name(name)),
        }
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

    /// Puts every staged file in place; returns the final paths.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, CliError> {
        let placed: Vec<PathBuf> = self.staged.iter().map(|n| self.dir.join(n)).collect();
        match &self.mode {
            Mode::Swap { target, stage } => {
                if let Err(e) = swap_in(stage, target, &self.staged) {
                    if e.kind() != std::io::ErrorKind::Unsupported {
                        return Err(CliError(format!(
                            "--out {}: cannot put the new files in place: {e}",
                            self.dir.display()
                        )));
                    }
                    // No exchange here, or an entry of the folder that cannot be linked:
                    // the files go in one by one.
                    let moves: Vec<_> = self
                        .staged
                        .iter()
                        .map(|n| (stage.join(n), target.join(n)))
                        .collect();
                    rename_each(target, &moves)?;
                }
            }
            Mode::InPlace { .. } => {
                let moves: Vec<_> = self
                    .staged
                    .iter()
                    .map(|n| (self.dir.join(temporary_name(n)), self.dir.join(n)))
                    .collect();
                rename_each(&self.dir, &moves)?;
            }
        }
        self.committed = true;
        if let Mode::Swap { stage, .. } = &self.mode {
            // After the swap this holds the previous outputs (or nothing, for a new folder).
            let _ = std::fs::remove_dir_all(stage);
            fault_point();
        }
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
        match &self.mode {
            Mode::Swap { stage, .. } => {
                let _ = std::fs::remove_dir_all(stage);
            }
            Mode::InPlace { created_dir } => {
                for name in &self.staged {
                    let _ = std::fs::remove_file(self.dir.join(temporary_name(name)));
                }
                if *created_dir {
                    let _ = std::fs::remove_dir(&self.dir);
                }
            }
        }
    }
}

fn temporary_name(name: &str) -> String {
    format!(".tmp-{}-{name}", std::process::id())
}

/// A hidden sibling folder to stage into, when the folder can be replaced by one rename: it
/// is not a mount point (a rename cannot cross file systems) and the system can exchange two
/// folders (or the folder does not exist yet). A symbolic link to a folder is followed, so the
/// folder it points to is the one replaced.
fn swap_plan(dir: &Path) -> Option<Mode> {
    let target = if dir.exists() {
        if !cfg!(target_os = "linux") {
            return None;
        }
        std::fs::canonicalize(dir).ok()?
    } else {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        let parent = parent.unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).ok()?;
        std::fs::canonicalize(parent).ok()?.join(dir.file_name()?)
    };
    let parent = target.parent()?;
    if dir.exists() && !same_file_system(&target, parent) {
        return None;
    }
    let name = target.file_name()?.to_str()?;
    let stage = parent.join(format!(".{name}{STAGE_MARK}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stage); // a dead run's, with our process id
    std::fs::create_dir(&stage).ok()?;
    Some(Mode::Swap { target, stage })
}

#[cfg(unix)]
fn same_file_system(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file_system(_: &Path, _: &Path) -> bool {
    false
}

/// Makes `stage` (holding the new files, `ours`) the folder `target`. The folder's other
/// entries are hard-linked into `stage` first, so they stay; then one rename. An error of kind
/// `Unsupported` means nothing changed and the files may still be renamed one by one.
fn swap_in(stage: &Path, target: &Path, ours: &[String]) -> std::io::Result<()> {
    if !target.exists() {
        fault_point();
        return std::fs::rename(stage, target);
    }
    let unsupported = |e: std::io::Error| std::io::Error::new(std::io::ErrorKind::Unsupported, e);
    for entry in std::fs::read_dir(target)? {
        let entry = entry?;
        let name = entry.file_name();
        if ours.iter().any(|o| name == o.as_str()) {
            if entry.path().is_dir() {
                let msg = format!(
                    "{} is a folder, so the file this run writes cannot go there",
                    entry.path().display()
                );
                return Err(std::io::Error::other(msg));
            }
            continue;
        }
        link_tree(&entry.path(), &stage.join(&name)).map_err(unsupported)?;
    }
    if let Ok(m) = target.metadata() {
        let _ = std::fs::set_permissions(stage, m.permissions());
    }
    fault_point();
    exchange(stage, target).map_err(unsupported)
}

/// `to` becomes a copy of `from` that shares its files: folders are made anew, files are hard
/// links, symbolic links are made again.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let kind = from.symlink_metadata()?.file_type();
    fault_point();
    if kind.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            link_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if kind.is_symlink() {
        #[cfg(unix)]
        return std::os::unix::fs::symlink(std::fs::read_link(from)?, to);
        #[cfg(not(unix))]
        return Err(std::io::ErrorKind::Unsupported.into());
    } else {
        std::fs::hard_link(from, to)
    }
}

/// Swaps two folders in one step (Linux's `renameat2` with `RENAME_EXCHANGE`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both pointers are NUL-terminated strings that outlive the call; renameat2 only
    // reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Renames each `(from, to)`; a file it replaces is first hard-linked aside (so `to` never
/// disappears) and deleted once every rename has worked; if one fails, the new files are
/// removed and the old ones put back.
fn rename_each(dir: &Path, moves: &[(PathBuf, PathBuf)]) -> Result<(), CliError> {
    let mut aside: Vec<(PathBuf, PathBuf)> = vec![];
    let mut placed: Vec<PathBuf> = vec![];
    let mut failure = None;
    for (i, (from, to)) in moves.iter().enumerate() {
        let fail = |e: std::io::Error| CliError(format!("{}: cannot write: {e}", to.display()));
        if to.is_dir() {
            failure = Some(CliError(format!(
                "{}: is a folder, so the file this run writes cannot go there",
                to.display()
            )));
            break;
        }
        if to.symlink_metadata().is_ok() {
            let old = dir.join(format!(".old-{}-{i}", std::process::id()));
            fault_point();
            let kept =
                std::fs::hard_link(to, &old).or_else(|_| std::fs::copy(to, &old).map(|_| ()));
            if let Err(e) = kept {
                failure = Some(fail(e));
                break;
            }
            aside.push((old, to.clone()));
        }
        fault_point();
        if let Err(e) = std::fs::rename(from, to) {
            failure = Some(fail(e));
            break;
        }
        placed.push(to.clone());
    }
    if let Some(e) = failure {
        for to in &placed {
            if !aside.iter().any(|(_, t)| t == to) {
                let _ = std::fs::remove_file(to);
            }
        }
        for (old, to) in aside.iter().rev() {
            let _ = std::fs::rename(old, to);
        }
        return Err(e);
    }
    for (old, _) in &aside {
        fault_point();
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

/// Removes what killed runs left: `.tmp-PID-*` and `.old-PID-*` files in `dir`, and
/// `.NAME.gradtape-stage-PID` folders beside it, of processes no longer running.
fn remove_leftovers(dir: &Path) {
    let dead = |pid: &str| pid.parse::<u32>().is_ok_and(|p| !process_alive(p));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let pid = name
                .strip_prefix(".tmp-")
                .or_else(|| name.strip_prefix(".old-"))
                .and_then(|rest| rest.split('-').next());
            if pid.is_some_and(dead) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let prefix = format!(".{name}{STAGE_MARK}");
    if let Ok(entries) = std::fs::read_dir(parent.unwrap_or(Path::new("."))) {
        for entry in entries.flatten() {
            let n = entry.file_name();
            let pid = n.to_str().and_then(|n| n.strip_prefix(&prefix));
            if pid.is_some_and(dead) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Whether a process with this id runs (a signal 0 probe; "not permitted" means it does).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_: u32) -> bool {
    true
}

/// The kill test's hook: with `GRADTAPE_TEST_KILL_AT=n` set, the process kills itself with
/// SIGKILL at the n-th file operation of a commit. Only in the test build.
#[cfg(test)]
fn fault_point() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let at = std::env::var("GRADTAPE_TEST_KILL_AT").ok();
    if let Some(at) = at.and_then(|a| a.parse::<usize>().ok()) {
        if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == at {
            // SAFETY: sends a signal to this process; no memory is involved.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}

#[cfg(not(test))]
fn fault_point() {}

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

/// What a compiled step runs: the graph passes' work, then the graph, one line per node.
pub fn explain_graph(g: &gradtape::Graph) -> String {
    let passes: Vec<String> = g
        .passes()
        .iter()
        .map(|r| format!("{} {}", r.pass, r.changed))
        .collect();
    let flat = match g.runs_flat() {
        true => ", over buffers of its own (no tensor between its kernels)",
        false => "",
    };
    format!(
        "Compiled (gradtape::function; --eager runs the step op by op), each call runs {} nodes \
         after the graph passes ({}){flat}:\n{g}",
        g.len(),
        passes.join(", ")
    )
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

    /// The files of one run, as the kill test writes them (the first one alone is the
    /// one-file case of `predict`).
    const NAMES: [&str; 3] = ["model.safetensors", "history.csv", "run.json"];

    /// Not a test by itself: the kill test starts the test binary with this test alone, to
    /// make one commit into `$GRADTAPE_TEST_KILL_DIR` and be killed at one file operation.
    #[test]
    fn kill_child() {
        let Ok(dir) = std::env::var("GRADTAPE_TEST_KILL_DIR") else {
            return;
        };
        let n: usize = std::env::var("GRADTAPE_TEST_KILL_FILES")
            .unwrap()
            .parse()
            .unwrap();
        let mut stage = Staging::new(Path::new(&dir), &NAMES[..n]).unwrap();
        for name in &NAMES[..n] {
            stage.write(name, format!("new {name}").as_bytes()).unwrap();
        }
        stage.commit().unwrap();
    }

    /// The folder as the previous run left it, with a file and a folder of the user's.
    fn old_outputs(dir: &Path, files: usize) {
        std::fs::create_dir_all(dir.join("notes")).unwrap();
        std::fs::write(dir.join("notes/inner.txt"), b"user's inner").unwrap();
        std::fs::write(dir.join("keep.txt"), b"user's").unwrap();
        for name in &NAMES[..files] {
            std::fs::write(dir.join(name), format!("old {name}")).unwrap();
        }
    }

    /// Issue 20: SIGKILL at every file operation of the commit (the hook in `fault_point`)
    /// must leave all the previous outputs or all the new ones, never a mix or a missing
    /// file, keep the user's own files, and leave nothing behind once the next run starts.
    #[test]
    fn a_kill_at_any_file_operation_leaves_the_old_outputs_or_the_new_ones() {
        use std::os::unix::process::ExitStatusExt;
        for (files, fresh) in [(3, false), (3, true), (1, false)] {
            let root = std::env::temp_dir().join(format!(
                "gradtape-kill-{}-{files}-{fresh}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            let dir = root.join("out");
            let mut at = 1;
            loop {
                let _ = std::fs::remove_dir_all(&dir);
                if !fresh {
                    old_outputs(&dir, files);
                }
                let status = std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "output::tests::kill_child", "--test-threads=1"])
                    .env("GRADTAPE_TEST_KILL_AT", at.to_string())
                    .env("GRADTAPE_TEST_KILL_DIR", &dir)
                    .env("GRADTAPE_TEST_KILL_FILES", files.to_string())
                    .stdout(std::process::Stdio::null())
                    .status()
                    .unwrap();
                let killed = status.signal() == Some(libc::SIGKILL);
                assert!(killed || status.success(), "kill at {at}: {status:?}");
                let found: Vec<Option<String>> = NAMES[..files]
                    .iter()
                    .map(|n| std::fs::read_to_string(dir.join(n)).ok())
                    .collect();
                let all = |age: &str| {
                    NAMES[..files]
                        .iter()
                        .zip(&found)
                        .all(|(n, f)| f.as_deref() == Some(format!("{age} {n}").as_str()))
                };
                let nothing = fresh && !dir.exists();
                assert!(
                    all("new") || all("old") || nothing,
                    "{files} files, fresh {fresh}, kill at {at}: {found:?}"
                );
                assert!(killed || all("new"), "an uninterrupted run commits");
                if !fresh {
                    let keep = std::fs::read(dir.join("keep.txt")).unwrap();
                    assert_eq!(keep, b"user's");
                    let inner = std::fs::read(dir.join("notes/inner.txt")).unwrap();
                    assert_eq!(inner, b"user's inner");
                }
                // The next run removes the leftovers before it starts.
                drop(Staging::new(&dir, &NAMES[..files]).unwrap());
                let beside: Vec<_> = std::fs::read_dir(&root)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .filter(|n| n != "out")
                    .collect();
                assert!(beside.is_empty(), "kill at {at}: left {beside:?}");
                if dir.exists() {
                    let mut inside: Vec<_> = listing(&dir).into_iter().map(|e| e.0).collect();
                    inside.retain(|n| n.starts_with('.'));
                    assert!(inside.is_empty(), "kill at {at}: left {inside:?}");
                }
                if !killed {
                    break;
                }
                at += 1;
            }
            // Links of keep.txt, notes, inner.txt, the swap, the removal of the old folder;
            // or one file's link aside, rename, removal.
            let points = if files == 1 {
                3
            } else if fresh {
                2
            } else {
                5
            };
            assert!(
                at > points,
                "{files} files, fresh {fresh}: only {at} kill points"
            );
            std::fs::remove_dir_all(&root).unwrap();
        }
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
