//! One error type for the whole library.
//!
//! Every message starts with the operation that failed and names the shapes, dtypes, axes or
//! values that made it fail, so a user can find the offending line without a debugger
//! (`matmul: inner dimensions differ: [2, 3] x [4, 5]`).

/// The result type of every fallible gradtape function.
///
/// ```
/// fn half(x: &gradtape::Tensor) -> gradtape::Result<gradtape::Tensor> {
///     gradtape::ops::divide(x, &2.0)
/// }
/// assert!(half(&gradtape::Tensor::scalar(1.0f32)).is_ok());
/// ```
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in gradtape. Each variant carries the operation's name.
///
/// ```
/// use gradtape::{ops, DType, Error, Tensor};
/// let e = ops::add(&Tensor::zeros(&[2], DType::F32).unwrap(), &Tensor::zeros(&[3], DType::F32).unwrap()).unwrap_err();
/// assert!(matches!(e, Error::Shape { op: "add", .. }));
/// assert_eq!(e.to_string(), "add: shapes [2] and [3] are not broadcastable");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Shapes that do not fit the operation (broadcasting, matmul, reshape, concat, ...).
    #[error("{op}: {msg}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the shapes.
        msg: String,
    },
    /// A dtype the operation does not accept, or two dtypes that differ.
    #[error("{op}: {msg}")]
    DType {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the dtypes.
        msg: String,
    },
    /// An axis outside `[-rank, rank)` or given twice.
    #[error("{op}: {msg}")]
    Axis {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the axis and rank.
        msg: String,
    },
    /// An index outside the dimension it indexes.
    #[error("{op}: {msg}")]
    Index {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the index and the bound.
        msg: String,
    },
    /// An argument whose value is not allowed (a negative size, a zero step, ...).
    #[error("{op}: {msg}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the value.
        msg: String,
    },
    /// A file that cannot be read or written, or whose contents are not what they should be.
    #[error("{op}: {msg}")]
    Io {
        /// The operation (`read_csv`, `checkpoint::load`, ...).
        op: &'static str,
        /// What was wrong, with the path and the line or field.
        msg: String,
    },
    /// A misuse of a tape (a gradient rule returning the wrong number of gradients, ...).
    #[error("{op}: {msg}")]
    Tape {
        /// The operation or tape method.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// A device that cannot be used (no driver, no GPU, a missing CUDA library), or tensors
    /// on different devices given to one op (gradtape never copies silently).
    #[error("{op}: {msg}")]
    Device {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the devices or the missing piece.
        msg: String,
    },
    /// A traced tensor's value read inside [`crate::function()`] while it traces (JAX's
    /// concretization error), or a function called where it cannot run (inside `vmap`): the
    /// value would otherwise be frozen into the graph at its first call.
    #[error("{op}: {msg}")]
    Trace {
        /// The read-back or call.
        op: &'static str,
        /// What was wrong and what to do instead.
        msg: String,
    },
    /// Memory that cannot be had (TensorFlow's `ResourceExhaustedError`): a tensor too large to
    /// allocate, or a pending tensor whose computation failed, reported on every later read.
    #[error("{op}: {msg}")]
    ResourceExhausted {
        /// The operation that needed the memory or the computation.
        op: &'static str,
        /// What was asked for, with the shape, dtype and bytes.
        msg: String,
    },
}

impl Error {
    /// The error for shapes that do not fit the operation, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    /// The error for a dtype the operation does not take, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn dtype(op: &'static str, msg: impl Into<String>) -> Self {
        Error::DType {
            op,
            msg: msg.into(),
        }
    }
    /// The error for an axis out of range or repeated, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn axis(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Axis {
            op,
            msg: msg.into(),
        }
    }
    /// The error for an index out of range, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn index(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Index {
            op,
            msg: msg.into(),
        }
    }
    /// The error for an argument the operation refuses, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn arg(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
    /// The error for a file that cannot be read or written, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn io(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Io {
            op,
            msg: msg.into(),
        }
    }
    /// The error for a tape or gradient rule used wrongly, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn tape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Tape {
            op,
            msg: msg.into(),
        }
    }
    /// The error for a device that is missing or mixed, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn device(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Device {
            op,
            msg: msg.into(),
        }
    }
    /// The error for memory or work beyond what can be given, from the op's name and a message naming the offending shapes,
    /// dtypes or values (for layers and ops written on top of gradtape).
    pub fn resource(op: &'static str, msg: impl Into<String>) -> Self {
        Error::ResourceExhausted {
            op,
            msg: msg.into(),
        }
    }
    /// The error for a traced value read inside a function being traced, from the read-back's
    /// name and a message saying what to do instead.
    pub fn trace(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Trace {
            op,
            msg: msg.into(),
        }
    }
    /// The name of the operation that failed.
    ///
    /// ```
    /// let e = gradtape::ops::sqrt(&gradtape::Tensor::scalar(1i64)).unwrap_err();
    /// assert_eq!(e.op(), "sqrt");
    /// ```
    pub fn op(&self) -> &'static str {
        match self {
            Error::Shape { op, .. }
            | Error::DType { op, .. }
            | Error::Axis { op, .. }
            | Error::Index { op, .. }
            | Error::InvalidArgument { op, .. }
            | Error::Io { op, .. }
            | Error::Tape { op, .. }
            | Error::Device { op, .. }
            | Error::Trace { op, .. }
            | Error::ResourceExhausted { op, .. } => op,
        }
    }
}
