//! Tensors made where the thread's default device says ([`crate::device::with_device`]), and
//! the scalar constants ops make from Rust numbers (cached per thread): the parts of creation
//! that read the context, above it; `tensor/mod.rs` makes tensors where it is told.

use super::{AsTensor, Operand, Tensor};
use crate::backend::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::shape::numel;

impl Tensor {
    /// A tensor from row-major values and a shape.
    ///
    /// # Errors
    /// When the number of values is not the product of the shape.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_vec(vec![1i64, 2, 3, 4], &[2, 2])?;
    /// assert_eq!(t.dtype(), gradtape::DType::I64);
    /// assert!(gradtape::Tensor::from_vec(vec![1.0f32; 5], &[2, 3]).is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn from_vec<T: Element>(values: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        if values.len() != numel(shape) {
            return Err(Error::shape(
                "Tensor::from_vec",
                format!(
                    "{} values do not fill shape {shape:?} ({} elements)",
                    values.len(),
                    numel(shape)
                ),
            ));
        }
        let t = Tensor::from_elems(values, shape);
        match crate::device::default_device() {
            Device::Cpu => Ok(t),
            d => t.move_to(d), // a fresh constant: nothing for a tape to record
        }
    }

    /// A tensor from a slice of row-major values and a shape.
    ///
    /// # Errors
    /// When the number of values is not the product of the shape.
    ///
    /// ```
    /// let t = gradtape::Tensor::from_slice(&[1.0f64, 2.0], &[2, 1])?;
    /// assert_eq!(t.shape(), &[2, 1]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn from_slice<T: Element>(values: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(values.to_vec(), shape)
    }

    /// A tensor of the given shape with every element `value` (converted to `dtype`).
    ///
    /// # Errors
    /// When the shape has more elements than memory can hold, or the allocation is refused
    /// ([`Error::ResourceExhausted`], never an abort).
    ///
    /// ```
    /// let t = gradtape::Tensor::full(&[2], 7.0, gradtape::DType::I64)?;
    /// assert_eq!(t.to_vec::<i64>()?, vec![7, 7]);
    /// assert!(gradtape::Tensor::full(&[1 << 40, 1 << 40], 0.0, gradtape::DType::F32).is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        Tensor::full_on(shape, value, dtype, crate::device::default_device())
    }

    /// All zeros.
    ///
    /// # Errors
    /// As [`Tensor::full`]: a shape too large to allocate.
    ///
    /// ```
    /// let t = gradtape::Tensor::zeros(&[2, 2], gradtape::DType::F32)?;
    /// assert_eq!(t.to_vec::<f32>()?, vec![0.0; 4]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn zeros(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(shape, 0.0, dtype)
    }

    /// All ones.
    ///
    /// # Errors
    /// As [`Tensor::full`]: a shape too large to allocate.
    ///
    /// ```
    /// let t = gradtape::Tensor::ones(&[3], gradtape::DType::F64)?;
    /// assert_eq!(t.to_vec::<f64>()?, vec![1.0; 3]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn ones(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(shape, 1.0, dtype)
    }

    /// The `n × n` identity matrix.
    ///
    /// # Errors
    /// When `n × n` elements cannot be allocated.
    ///
    /// ```
    /// let i = gradtape::Tensor::eye(2, gradtape::DType::F32)?;
    /// assert_eq!(i.to_vec::<f32>()?, vec![1.0, 0.0, 0.0, 1.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn eye(n: usize, dtype: DType) -> Result<Tensor> {
        let zeros = Tensor::zeros(&[n, n], dtype)?;
        let mut v = zeros.read_f64_vec()?;
        for i in 0..n {
            v[i * n + i] = 1.0;
        }
        Ok(Tensor::from_f64s(&v, &[n, n], dtype))
    }
}

impl Operand {
    /// [`Operand::into_tensor_of`] drawing bare numbers from the per-thread constant cache
    /// (for the ops' own use: these tensors are shared, so they are never handed out).
    fn into_operand_of(self, dtype: DType) -> Tensor {
        match self {
            Operand::Tensor(t) => t,
            Operand::Scalar(v) => scalar_constant(v, dtype),
            Operand::Int(v) if dtype == DType::I64 && v as f64 as i64 != v => Tensor::scalar(v),
            Operand::Int(v) => scalar_constant(v as f64, dtype),
        }
    }
}

const CONSTANTS: usize = 32;

/// Recently used scalar constants (`x * 2.0`, a learning rate), direct-mapped by value in the
/// thread's context. Tensors are immutable, so sharing one between ops is safe, and a loop that
/// multiplies by the same number each step makes no new tensor for it.
fn scalar_constant(v: f64, dtype: DType) -> Tensor {
    let bits = v.to_bits();
    let slot = (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize ^ dtype as usize;
    let lookup = crate::context::try_with(|c| {
        let mut c = c.constants.try_borrow_mut().ok()?;
        if c.is_empty() {
            c.resize(CONSTANTS, None);
        }
        let entry = &mut c[slot % CONSTANTS];
        match entry {
            Some((b, d, t)) if *b == bits && *d == dtype => Some(t.clone()),
            _ => {
                let t = Tensor::from_f64s(&[v], &[], dtype);
                *entry = Some((bits, dtype, t.clone()));
                Some(t)
            }
        }
    });
    lookup
        .flatten()
        .unwrap_or_else(|| Tensor::from_f64s(&[v], &[], dtype))
}

/// Two operands as tensors of one dtype: a bare number takes the other side's dtype.
pub(crate) fn operand_pair(
    a: &(impl AsTensor + ?Sized),
    b: &(impl AsTensor + ?Sized),
) -> (Tensor, Tensor) {
    match (a.operand(), b.operand()) {
        (Operand::Tensor(a), b) => {
            let dt = a.dtype();
            (a, b.into_operand_of(dt))
        }
        (a, Operand::Tensor(b)) => {
            let dt = b.dtype();
            (a.into_operand_of(dt), b)
        }
        (a, b) => {
            // Two bare numbers: int64 when both are integers, float32 otherwise.
            let dt = match (&a, &b) {
                (Operand::Int(_), Operand::Int(_)) => DType::I64,
                _ => DType::F32,
            };
            (a.into_operand_of(dt), b.into_operand_of(dt))
        }
    }
}
