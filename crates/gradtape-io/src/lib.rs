//! gradtape's file formats, one module each, below the training kit and used by it: CSV tables
//! as tensors ([`data`]), NumPy's `.npy` arrays (`npy`, the default feature `npy`), TensorBoard's
//! event files ([`summary`]). The `gradtape` crate re-exports the three modules under the same
//! names (`gradtape::data`, ...); this crate exists so that they compile beside the training
//! kit instead of in one crate with it.
#![deny(missing_docs)]

use std::path::Path;

use gradtape_core::{Error, Result};

pub mod data;
#[cfg(feature = "npy")]
pub mod npy;
pub mod summary;

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so a reader
/// (or a crash) never sees half a file: `.npy` files here, checkpoints in the training kit.
///
/// # Errors
/// [`Error::Io`] naming `op` and `path` when the file cannot be written; the temporary file
/// is removed then.
pub fn write_atomically(op: &'static str, path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.display();
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(op, format!("{name}: cannot write: {e}"))
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(op, format!("{name}: cannot write: {e}"))
    })
}
