//! Parsers for numeric options, so that a bad value names its option and says what is allowed
//! (clap adds the option's name: `invalid value '-5' for '--epochs <E>': ...`). Numeric options
//! also set `allow_negative_numbers`, so `--epochs -5` reaches these instead of being taken for
//! an unknown option.

/// A count: a whole number of at least 1 (epochs, batch size, points, layer sizes).
pub fn count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err("expected a whole number of at least 1".into()),
    }
}

/// A seed: a whole number, 0 or more.
pub fn seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("expected a whole number from 0 to {}", u64::MAX))
}

/// A fraction of the rows: a number from 0 up to (not including) 1.
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err("expected a fraction from 0 up to (not including) 1, such as 0.15".into()),
    }
}

/// A positive finite number (a learning rate).
pub fn positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a positive number, such as 0.01".into()),
    }
}

/// A finite number, 0 or more (a noise level).
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("expected a number of 0 or more".into()),
    }
}

/// Any finite number.
pub fn finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err("expected a finite number".into()),
    }
}

/// An image size, `HxW` or `HxWxC` (channels 1 when left out), such as `8x8` or `28x28x1`.
pub fn image(s: &str) -> Result<[usize; 3], String> {
    let dims: Vec<Option<usize>> = s
        .trim()
        .split(['x', 'X'])
        .map(|d| d.trim().parse::<usize>().ok().filter(|&v| v >= 1))
        .collect();
    match dims[..] {
        [Some(h), Some(w)] => Ok([h, w, 1]),
        [Some(h), Some(w), Some(c)] => Ok([h, w, c]),
        _ => Err("expected HEIGHTxWIDTH or HEIGHTxWIDTHxCHANNELS of whole numbers, such as 8x8 or 28x28x1".into()),
    }
}

/// A device: `cpu`, `cuda`, `cuda:N` (or TensorFlow's `/GPU:N`).
pub fn device(s: &str) -> Result<gradtape::Device, String> {
    s.parse::<gradtape::Device>()
        .map_err(|_| "expected cpu, cuda or cuda:N".into())
}
