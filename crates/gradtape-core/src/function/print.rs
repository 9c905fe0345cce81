//! `print`, TensorFlow's `tf.print`: a node with an effect in a trace, so it prints at every
//! call of a compiled function.

use std::sync::Arc;

use crate::context::traces::{self, PrintSink};
use crate::error::Result;
use crate::tensor::Tensor;

/// Prints `text` and the tensors' elements on standard error at every call, also inside a
/// [`function()`](crate::function()) (TensorFlow's `tf.print`; Rust's `println!` there runs while it traces only).
///
/// ```
/// gradtape::print("x:", &[&gradtape::Tensor::scalar(2.0f32)])?; // x: 2.0
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// # Errors
/// When a tensor's elements cannot be computed (a pending tensor whose computation failed).
pub fn print(text: &str, tensors: &[&Tensor]) -> Result<()> {
    print_to(text, tensors, None)
}

/// [`print()`] to `sink` instead of standard error (TensorFlow's `output_stream`): a log, a test.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// let lines = Arc::new(Mutex::new(vec![]));
/// let sink = { let lines = lines.clone(); move |l: &str| lines.lock().unwrap().push(l.to_string()) };
/// gradtape::print_with("x:", &[&gradtape::Tensor::from_vec(vec![1i64, 2], &[2])?], sink)?;
/// assert_eq!(lines.lock().unwrap()[0], "x: [1 2]");
/// # Ok::<(), gradtape::Error>(())
/// ```
///
/// # Errors
/// As [`print()`].
pub fn print_with(
    text: &str,
    tensors: &[&Tensor],
    sink: impl Fn(&str) + Send + Sync + 'static,
) -> Result<()> {
    let sink: PrintSink = Arc::new(sink);
    print_to(text, tensors, Some(&sink))
}

pub(crate) fn print_to(text: &str, tensors: &[&Tensor], sink: Option<&PrintSink>) -> Result<()> {
    // inside vmap, every example: the batch behind them
    let tensors: Vec<Tensor> = tensors.iter().map(|t| t.all_examples()).collect();
    let tensors: Vec<&Tensor> = tensors.iter().collect();
    traces::note_print(text, &tensors, sink);
    let mut line = text.to_string();
    for t in tensors {
        if !line.is_empty() {
            line.push(' ');
        }
        line += &crate::display::numpy(t)?;
    }
    match sink {
        Some(sink) => sink(&line),
        None => eprintln!("{line}"),
    }
    Ok(())
}
