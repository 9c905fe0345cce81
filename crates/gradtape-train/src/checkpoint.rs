//! Saving and loading variables as `safetensors` files (readable by PyTorch and Hugging Face
//! tools). Files are written to a temporary name and renamed, so a crash never leaves half a
//! checkpoint; loading checks every name, shape and dtype and reports all mismatches at once,
//! and restores nothing unless everything fits.
//!
//! ```
//! use gradtape::{checkpoint, Tensor, Variable, VariableOptions};
//! let named = |n: &str, v: f32| Variable::with_options(Tensor::scalar(v), VariableOptions { name: Some(n.into()), trainable: true });
//! let (a, b) = (named("a", 1.5), named("b", -2.0));
//! let path = std::env::temp_dir().join("gradtape-doc-ckpt.safetensors");
//! checkpoint::save(&path, &[a.clone(), b.clone()], &Default::default())?;
//! a.assign(&0.0)?;
//! checkpoint::restore(&path, &[a.clone(), b])?;
//! assert_eq!(a.value().to_scalar::<f32>()?, 1.5);
//! # Ok::<(), gradtape::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::optimizers::Optimizer;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::Variable;
use gradtape_core::{Error, Result};
use gradtape_io::write_atomically;

/// The contents of a checkpoint file.
///
/// ```
/// let p = std::env::temp_dir().join("gradtape-doc-ck2.safetensors");
/// gradtape::checkpoint::save_tensors(&p, &[("w".into(), gradtape::Tensor::scalar(1i64))], &Default::default())?;
/// let ck = gradtape::checkpoint::load(&p)?;
/// assert_eq!(ck.tensors["w"].to_scalar::<i64>()?, 1);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The file's string metadata.
    pub metadata: BTreeMap<String, String>,
}

fn bytes_of(t: &Tensor) -> Result<(Dtype, Vec<u8>)> {
    Ok(match t.dtype() {
        DType::F32 => (
            Dtype::F32,
            t.to_vec::<f32>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::F64 => (
            Dtype::F64,
            t.to_vec::<f64>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::I64 => (
            Dtype::I64,
            t.to_vec::<i64>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::Bool => (
            Dtype::BOOL,
            t.to_vec::<bool>()?.iter().map(|&v| v as u8).collect(),
        ),
    })
}

/// Writes named tensors and string metadata to `path` (atomically).
///
/// # Errors
/// When names repeat or the file cannot be written.
///
/// ```
/// let p = std::env::temp_dir().join("gradtape-doc-ck3.safetensors");
/// let t = gradtape::Tensor::ones(&[2], gradtape::DType::F64).unwrap();
/// assert!(gradtape::checkpoint::save_tensors(&p, &[("a".into(), t.clone()), ("a".into(), t)], &Default::default()).is_err());
/// ```
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let op = "checkpoint::save";
    let mut raw = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if raw
            .iter()
            .any(|(n, ..): &(String, Dtype, Vec<usize>, Vec<u8>)| n == name)
        {
            return Err(Error::arg(op, format!("the name {name:?} is used twice")));
        }
        let (dt, bytes) = bytes_of(t)?;
        raw.push((name.clone(), dt, t.shape().to_vec(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(n, dt, shape, b)| {
            Ok((
                n.clone(),
                TensorView::new(*dt, shape.clone(), b).map_err(|e| Error::io(op, e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let meta: Option<HashMap<String, String>> =
        (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect());
    let bytes =
        safetensors::tensor::serialize(views, &meta).map_err(|e| Error::io(op, e.to_string()))?;
    write_atomically(op, path, &bytes)
}

/// Writes variables under their names.
///
/// # Errors
/// When a variable has no name, names repeat, or the file cannot be written.
///
/// ```
/// let p = std::env::temp_dir().join("gradtape-doc-ck4.safetensors");
/// let unnamed = gradtape::Variable::new(1.0);
/// assert!(gradtape::checkpoint::save(&p, &[unnamed], &Default::default()).is_err());
/// ```
pub fn save(
    path: &Path,
    variables: &[Variable],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    save_tensors(
        path,
        &named_values(variables, "checkpoint::save")?,
        metadata,
    )
}

fn named_values(variables: &[Variable], op: &'static str) -> Result<Vec<(String, Tensor)>> {
    variables
        .iter()
        .map(|v| match v.name() {
            Some(n) => Ok((n.to_string(), v.read_value())),
            None => Err(Error::arg(
                op,
                format!("a variable of shape {:?} has no name", v.shape()),
            )),
        })
        .collect()
}

/// Writes variables and the optimizer's state ([`Optimizer::state`]: step count, momentum,
/// Adam's moments...) in one file, so that training resumed from it continues exactly as an
/// uninterrupted run would (Keras's `tf.train.Checkpoint(model=..., optimizer=...)`).
///
/// # Errors
/// As [`save`].
///
/// ```
/// use gradtape::optimizers::{Adam, Optimizer};
/// use gradtape::{checkpoint, Tensor, Variable, VariableOptions};
/// let w = Variable::with_options(1.0, VariableOptions { name: Some("w".into()), trainable: true });
/// let mut opt = Adam::new(0.1);
/// opt.apply_gradients([(Tensor::scalar(1.0f32), &w)])?;
/// let p = std::env::temp_dir().join("gradtape-doc-ck-opt.safetensors");
/// checkpoint::save_with_optimizer(&p, &[w.clone()], &opt, &Default::default())?;
/// let mut fresh = Adam::new(0.1);
/// checkpoint::restore_with_optimizer(&p, &[w], &mut fresh)?;
/// assert_eq!(fresh.iterations(), 1);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn save_with_optimizer(
    path: &Path,
    variables: &[Variable],
    optimizer: &dyn Optimizer,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut named = named_values(variables, "checkpoint::save_with_optimizer")?;
    named.extend(optimizer.state(variables)?);
    save_tensors(path, &named, metadata)
}

/// Restores what [`save_with_optimizer`] wrote: the variables (as [`restore`]) and the
/// optimizer's state. Nothing changes unless both fit.
///
/// # Errors
/// As [`restore`], and when the file has no optimizer state or a slot does not fit.
pub fn restore_with_optimizer(
    path: &Path,
    variables: &[Variable],
    optimizer: &mut dyn Optimizer,
) -> Result<Checkpoint> {
    let ck = load(path)?;
    check_variables(path, &ck, variables)?;
    optimizer.load_state(variables, &ck.tensors)?;
    assign_variables(&ck, variables)?;
    Ok(ck)
}

/// Reads every tensor and the metadata of a safetensors file.
///
/// # Errors
/// When the file cannot be read, is truncated or corrupted, or holds a dtype gradtape does not
/// have.
///
/// ```
/// let e = gradtape::checkpoint::load(std::path::Path::new("/no/such/file.safetensors")).unwrap_err();
/// assert!(e.to_string().contains("cannot read"));
/// ```
pub fn load(path: &Path) -> Result<Checkpoint> {
    let op = "checkpoint::load";
    let name = path.display();
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(op, format!("{name}: cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::io(op, format!("{name}: not a valid safetensors file: {e}")))?;
    let (_, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| Error::io(op, format!("{name}: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (n, v) in st.tensors() {
        let shape = v.shape().to_vec();
        let d = v.data();
        let chunks = |k: usize| d.chunks_exact(k);
        let t = match v.dtype() {
            Dtype::F32 => Tensor::from_vec(
                chunks(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                &shape,
            )?,
            Dtype::F64 => Tensor::from_vec(
                chunks(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
                &shape,
            )?,
            Dtype::I64 => Tensor::from_vec(
                chunks(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
                &shape,
            )?,
            Dtype::BOOL => Tensor::from_vec(d.iter().map(|&b| b != 0).collect(), &shape)?,
            other => {
                return Err(Error::io(
                    op,
                    format!(
                        "{name}: tensor {n:?} has dtype {other:?}, which gradtape does not support"
                    ),
                ))
            }
        };
        tensors.insert(n, t);
    }
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(Checkpoint { tensors, metadata })
}

/// Loads `path` into variables by name: every variable must be present with its shape and
/// dtype, or nothing is assigned and the error lists every mismatch.
///
/// # Errors
/// When the file is unreadable or any variable is missing or mismatched.
///
/// ```
/// use gradtape::{checkpoint, Tensor, Variable, VariableOptions};
/// let v = Variable::with_options(Tensor::scalar(1.0f32), VariableOptions { name: Some("v".into()), trainable: true });
/// let p = std::env::temp_dir().join("gradtape-doc-ck5.safetensors");
/// checkpoint::save(&p, &[v.clone()], &Default::default())?;
/// let w = Variable::with_options(Tensor::zeros(&[2], gradtape::DType::F32)?, VariableOptions { name: Some("v".into()), trainable: true });
/// assert!(checkpoint::restore(&p, &[w]).is_err()); // shape [] in the file, [2] in the model
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn restore(path: &Path, variables: &[Variable]) -> Result<Checkpoint> {
    let ck = load(path)?;
    check_variables(path, &ck, variables)?;
    assign_variables(&ck, variables)?;
    Ok(ck)
}

/// Every variable present in `ck` with its shape and dtype, or an error listing each problem.
fn check_variables(path: &Path, ck: &Checkpoint, variables: &[Variable]) -> Result<()> {
    let mut problems = vec![];
    for v in variables {
        let Some(n) = v.name() else {
            problems.push(format!("a variable of shape {:?} has no name", v.shape()));
            continue;
        };
        match ck.tensors.get(n) {
            None => problems.push(format!("{n:?} is missing")),
            Some(t) if t.shape() != v.shape() || t.dtype() != v.dtype() => problems.push(format!(
                "{n:?} is {} {:?} in the file but {} {:?} in the model",
                t.dtype(),
                t.shape(),
                v.dtype(),
                v.shape()
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(Error::io(
            "checkpoint::restore",
            format!("{}: {}", path.display(), problems.join("; ")),
        ));
    }
    Ok(())
}

fn assign_variables(ck: &Checkpoint, variables: &[Variable]) -> Result<()> {
    for v in variables {
        if let Some(t) = v.name().and_then(|n| ck.tensors.get(n)) {
            // Restored to wherever the variable lives (a checkpoint saved from a GPU loads on
            // the CPU and the other way round).
            v.assign(&t.move_to(v.device())?)?;
        }
    }
    Ok(())
}
