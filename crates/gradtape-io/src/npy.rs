//! NumPy's `.npy` files: `npy::load` is `np.load`, `npy::save` is `np.save`, so arrays move
//! between gradtape and Python with their shape and dtype. The format is read and written by
//! the `npyz` crate (byte order, dtype strings, Fortran order); this module only maps dtypes.
//!
//! ```
//! use gradtape::{npy, Tensor};
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let path = std::env::temp_dir().join("gradtape-doc-npy.npy");
//! npy::save(&path, &x)?;
//! let y = npy::load(&path)?;
//! assert_eq!((y.shape(), y.to_vec::<f32>()?), (x.shape(), x.to_vec::<f32>()?));
//! # Ok::<(), gradtape::Error>(())
//! ```

use std::path::Path;

use npyz::{TypeChar, WriterBuilder};

use gradtape_core::ops;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::{Error, Result};

/// Reads a `.npy` file. float32, float64 and bool arrays keep their dtype; every integer
/// dtype (signed or unsigned, 1 to 8 bytes) becomes int64, gradtape's one integer type.
/// Either byte order and either memory order (C or Fortran) is read.
///
/// # Errors
/// When the file cannot be read or is not a valid `.npy` file, holds a dtype gradtape does not
/// have (complex, strings, records, float16), or a uint64 value above `i64::MAX`.
///
/// ```
/// let e = gradtape::npy::load(std::path::Path::new("/no/such.npy")).unwrap_err();
/// assert!(e.to_string().contains("/no/such.npy"));
/// ```
pub fn load(path: &Path) -> Result<Tensor> {
    let op = "npy::load";
    let name = path.display();
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(op, format!("{name}: cannot read: {e}")))?;
    let bad = |e: std::io::Error| Error::io(op, format!("{name}: not a valid .npy file: {e}"));
    // npyz 0.8 multiplies the header's sizes unchecked (a panic in debug builds, a wrapped
    // count in release): look at them first. An empty array is read with its shape written as
    // `(0,)`, the same length padded with spaces, and given its real shape after.
    let mut bytes = bytes;
    let mut empty_shape = None;
    if let Some((at, dims)) = header_shape(&bytes) {
        if dims.contains(&0) {
            let text = format!("{:width$}", "(0,)", width = at.len());
            bytes[at].copy_from_slice(text.as_bytes());
            empty_shape = Some(dims.iter().map(|&d| d as usize).collect::<Vec<_>>());
        } else if dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .is_none()
        {
            return Err(Error::io(
                op,
                format!(
                    "{name}: the header's shape {dims:?} has more elements than memory can hold"
                ),
            ));
        }
    }
    let file = npyz::NpyFile::new(&bytes[..]).map_err(bad)?;
    let shape: Vec<usize> = match empty_shape {
        Some(shape) => shape,
        None => file.shape().iter().map(|&d| d as usize).collect(),
    };
    let fortran = file.order() == npyz::Order::Fortran;
    let npyz::DType::Plain(ts) = file.dtype() else {
        return Err(Error::io(
            op,
            format!("{name}: record arrays are not supported"),
        ));
    };
    // Fortran order lists the elements with the first axis fastest: read them as the
    // transposed shape, then transpose back.
    let stored: Vec<usize> = if fortran {
        shape.iter().rev().copied().collect()
    } else {
        shape.clone()
    };
    // The header is input like any other: a shape whose element count overflows, or that
    // claims more data than the file holds, is refused here (npyz would panic or try to
    // allocate it); a shape with a 0 is empty whatever its other sizes.
    let numel = gradtape_core::internal::checked_numel(&shape);
    let fits = numel
        .and_then(|n| n.checked_mul(ts.size_field().max(1) as usize))
        .is_some_and(|b| b <= bytes.len());
    if !fits {
        return Err(Error::io(
            op,
            format!(
                "{name}: the header's shape {shape:?} of {ts} needs more bytes than the file's {}",
                bytes.len()
            ),
        ));
    }
    let ints = |v: Vec<i64>| Tensor::from_vec(v, &stored);
    if numel == Some(0) {
        let dtype = match ts.type_char() {
            TypeChar::Float if ts.size_field() == 4 => Some(gradtape_core::DType::F32),
            TypeChar::Float if ts.size_field() == 8 => Some(gradtape_core::DType::F64),
            TypeChar::Bool => Some(gradtape_core::DType::Bool),
            TypeChar::Int | TypeChar::Uint => Some(gradtape_core::DType::I64),
            _ => None,
        };
        if let Some(dtype) = dtype {
            return Tensor::zeros(&shape, dtype);
        }
    }
    let t = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => Tensor::from_vec(file.into_vec::<f32>().map_err(bad)?, &stored)?,
        (TypeChar::Float, 8) => Tensor::from_vec(file.into_vec::<f64>().map_err(bad)?, &stored)?,
        (TypeChar::Bool, 1) => Tensor::from_vec(file.into_vec::<bool>().map_err(bad)?, &stored)?,
        (TypeChar::Int, 1) => ints(widen(file.into_vec::<i8>().map_err(bad)?))?,
        (TypeChar::Int, 2) => ints(widen(file.into_vec::<i16>().map_err(bad)?))?,
        (TypeChar::Int, 4) => ints(widen(file.into_vec::<i32>().map_err(bad)?))?,
        (TypeChar::Int, 8) => ints(file.into_vec::<i64>().map_err(bad)?)?,
        (TypeChar::Uint, 1) => ints(widen(file.into_vec::<u8>().map_err(bad)?))?,
        (TypeChar::Uint, 2) => ints(widen(file.into_vec::<u16>().map_err(bad)?))?,
        (TypeChar::Uint, 4) => ints(widen(file.into_vec::<u32>().map_err(bad)?))?,
        (TypeChar::Uint, 8) => {
            let v = file.into_vec::<u64>().map_err(bad)?;
            let big = v.iter().find(|&&x| x > i64::MAX as u64);
            if let Some(x) = big {
                return Err(Error::io(
                    op,
                    format!("{name}: uint64 value {x} does not fit int64"),
                ));
            }
            ints(v.into_iter().map(|x| x as i64).collect())?
        }
        _ => {
            return Err(Error::io(
                op,
                format!(
                    "{name}: dtype {ts} is not one gradtape has (float32, float64, integers, bool)"
                ),
            ))
        }
    };
    if fortran && t.rank() > 1 {
        ops::transpose(&t, None)?.to_contiguous()
    } else {
        Ok(t)
    }
}

/// Where the header's `'shape': (...)` tuple is (the parentheses included) and its sizes;
/// `None` when it cannot be found this way (npyz then reports what is wrong).
fn header_shape(bytes: &[u8]) -> Option<(std::ops::Range<usize>, Vec<u64>)> {
    // the header follows the magic, version and length, and ends at the first newline
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let header = bytes.get(..end)?;
    let key = header.windows(7).position(|w| w == b"'shape'")?;
    let open = key + header[key..].iter().position(|&b| b == b'(')?;
    let close = open + header[open..].iter().position(|&b| b == b')')?;
    let inside = std::str::from_utf8(&header[open + 1..close]).ok()?;
    let dims = inside
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some((open..close + 1, dims))
}

fn widen<T: Into<i64>>(v: Vec<T>) -> Vec<i64> {
    v.into_iter().map(Into::into).collect()
}

/// Writes a tensor as a `.npy` file (C order, little-endian, the tensor's dtype), atomically:
/// under a temporary name, then renamed.
///
/// # Errors
/// When a pending tensor cannot be computed or the file cannot be written.
///
/// ```
/// let p = std::env::temp_dir().join("gradtape-doc-npy2.npy");
/// gradtape::npy::save(&p, &gradtape::Tensor::from_vec(vec![true, false], &[2])?)?;
/// assert_eq!(gradtape::npy::load(&p)?.dtype(), gradtape::DType::Bool);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn save(path: &Path, tensor: &Tensor) -> Result<()> {
    let op = "npy::save";
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let mut bytes = vec![];
    let failed = |e: std::io::Error| Error::io(op, format!("{}: {e}", path.display()));
    fn write<T: npyz::AutoSerialize + gradtape_core::Element>(
        out: &mut Vec<u8>,
        shape: &[u64],
        t: &Tensor,
    ) -> std::io::Result<Result<()>> {
        let values = match t.to_vec::<T>() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(shape)
            .writer(out)
            .begin_nd()?;
        w.extend(values)?;
        w.finish()?;
        Ok(Ok(()))
    }
    match tensor.dtype() {
        DType::F32 => write::<f32>(&mut bytes, &shape, tensor),
        DType::F64 => write::<f64>(&mut bytes, &shape, tensor),
        DType::I64 => write::<i64>(&mut bytes, &shape, tensor),
        DType::Bool => write::<bool>(&mut bytes, &shape, tensor),
    }
    .map_err(failed)??;
    crate::write_atomically(op, path, &bytes)
}
