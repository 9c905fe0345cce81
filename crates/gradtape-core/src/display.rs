//! `Display` in TensorFlow's style: `tf.Tensor([1. 2. 3.], shape=(3,), dtype=float32)`.
//!
//! Values are printed the way NumPy prints them (TensorFlow delegates to NumPy), summarised with
//! `...` past 1,000 elements.

use std::fmt;

use crate::dtype::DType;
use crate::tensor::Tensor;

const SUMMARIZE_OVER: usize = 1000;
const EDGE: usize = 3;

fn fmt_elem(v: f64, dtype: DType, scalar: bool) -> String {
    match dtype {
        DType::Bool => if v != 0.0 { "True" } else { "False" }.to_string(),
        DType::I64 => format!("{}", v as i64),
        DType::F32 | DType::F64 => {
            if v.is_nan() {
                "nan".into()
            } else if v.is_infinite() {
                if v > 0.0 { "inf" } else { "-inf" }.into()
            } else if v.fract() == 0.0 && v.abs() < 1e16 {
                if scalar {
                    format!("{v:.1}")
                } else {
                    format!("{v}.")
                }
            } else if dtype == DType::F32 {
                format!("{}", v as f32)
            } else {
                format!("{v}")
            }
        }
    }
}

fn write_array(
    out: &mut String,
    vals: &[f64],
    shape: &[usize],
    dtype: DType,
    summarize: bool,
    depth: usize,
) {
    if shape.is_empty() {
        out.push_str(&fmt_elem(vals[0], dtype, false));
        return;
    }
    let n = shape[0];
    let stride: usize = shape[1..].iter().product();
    out.push('[');
    let idx: Vec<Option<usize>> = if summarize && n > 2 * EDGE {
        (0..EDGE)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((n - EDGE..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    };
    for (k, i) in idx.iter().enumerate() {
        if k > 0 {
            if shape.len() > 1 {
                out.push_str(&"\n".repeat(shape.len() - 1));
                out.push_str(&" ".repeat(depth + 1));
            } else {
                out.push(' ');
            }
        }
        match i {
            Some(i) => write_array(
                out,
                &vals[i * stride..(i + 1) * stride],
                &shape[1..],
                dtype,
                summarize,
                depth + 1,
            ),
            None => out.push_str("..."),
        }
    }
    out.push(']');
}

/// The elements as NumPy prints them (`[1. 2.]`, summarized above 1,000 elements), read
/// at every call (what `gradtape::print` shows).
pub(crate) fn numpy(t: &Tensor) -> crate::Result<String> {
    let vals = t.read_f64_vec()?;
    Ok(if t.rank() == 0 {
        fmt_elem(vals[0], t.dtype(), true)
    } else {
        let mut s = String::new();
        write_array(
            &mut s,
            &vals,
            t.shape(),
            t.dtype(),
            t.numel() > SUMMARIZE_OVER,
            0,
        );
        s
    })
}

/// A shape as NumPy writes it: `()`, `(3,)`, `(2, 3)`.
fn numpy_shape(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Inside a function's trace, a value the graph computes is shown by name, as
        // TensorFlow shows a symbolic tensor: its elements are this call's only.
        if let Some(name) = crate::context::traces::symbol(self) {
            return write!(
                f,
                "Tensor(\"{name}:0\", shape={}, dtype={})",
                numpy_shape(self.shape()),
                self.dtype()
            );
        }
        let body = match numpy(self) {
            Ok(body) => body,
            // A pending tensor whose computation failed: say so instead of showing elements.
            Err(e) => return write!(f, "tf.Tensor(<{e}>, shape={:?})", self.shape()),
        };
        write!(
            f,
            "tf.Tensor({body}, shape={}, dtype={})",
            numpy_shape(self.shape()),
            self.dtype()
        )
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    #[test]
    fn matrices_print_like_numpy() {
        let t = Tensor::from_vec(vec![1.0f32, 2.5, 3.0, 4.0], &[2, 2]).unwrap();
        assert_eq!(
            t.to_string(),
            "tf.Tensor([[1. 2.5]\n [3. 4.]], shape=(2, 2), dtype=float32)"
        );
        assert_eq!(
            Tensor::scalar(3.0f32).to_string(),
            "tf.Tensor(3.0, shape=(), dtype=float32)"
        );
        let b = Tensor::from_vec(vec![true, false], &[2]).unwrap();
        assert_eq!(
            b.to_string(),
            "tf.Tensor([True False], shape=(2,), dtype=bool)"
        );
    }

    #[test]
    fn large_tensors_are_summarised() {
        let t = Tensor::zeros(&[2000], DType::I64).unwrap();
        assert_eq!(
            t.to_string(),
            "tf.Tensor([0 0 0 ... 0 0 0], shape=(2000,), dtype=int64)"
        );
    }
}
