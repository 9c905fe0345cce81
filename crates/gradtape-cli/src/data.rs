//! The data: made like the tutorial's, or read from a CSV file with clear errors.

use std::path::Path;

use gradtape::random::Generator;
use gradtape::DType;

use crate::CliError;

/// Two columns of numbers and where they came from.
pub struct Data {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub source: String,
}

/// `points` points with x ~ U(0, 1) and y = a + b·x + N(0, noise²), fixed by `seed`.
pub fn generate(points: usize, seed: u64, noise: f64, a: f64, b: f64) -> Result<Data, CliError> {
    let mut rng = Generator::from_seed(seed);
    let x = rng
        .uniform(&[points], 0.0, 1.0, DType::F64)?
        .to_vec::<f64>()?;
    let n = rng
        .normal(&[points], 0.0, noise, DType::F64)?
        .to_vec::<f64>()?;
    let y = x.iter().zip(&n).map(|(x, n)| a + b * x + n).collect();
    Ok(Data {
        x,
        y,
        source: format!("generated ({points} points, seed {seed})"),
    })
}

/// Splits one CSV line into trimmed cells (double quotes around a cell are removed).
fn cells(line: &str) -> Vec<String> {
    line.split(',')
        .map(|c| {
            let c = c.trim();
            c.strip_prefix('"')
                .and_then(|c| c.strip_suffix('"'))
                .unwrap_or(c)
                .to_string()
        })
        .collect()
}

fn column(
    spec: Option<&str>,
    default: usize,
    header: Option<&[String]>,
    what: &str,
) -> Result<usize, CliError> {
    let Some(spec) = spec else { return Ok(default) };
    if let Ok(i) = spec.parse::<usize>() {
        return Ok(i);
    }
    match header {
        Some(h) => h.iter().position(|c| c == spec).ok_or_else(|| {
            CliError(format!(
                "--{what} {spec:?}: no such column (the header has: {})",
                h.join(", ")
            ))
        }),
        None => Err(CliError(format!(
            "--{what} {spec:?}: the file has no header row, so columns are named by 0-based index"
        ))),
    }
}

/// Reads two columns of a CSV file. The first row is a header when any of its cells is not a
/// number. Columns are chosen by header name or 0-based index (default: the first two).
pub fn read_csv(path: &Path, x_col: Option<&str>, y_col: Option<&str>) -> Result<Data, CliError> {
    let name = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError(format!("{name}: cannot read: {e}")))?;
    let mut rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let header = match rows.peek() {
        Some((_, first)) if cells(first).iter().any(|c| c.parse::<f64>().is_err()) => {
            let h = cells(first);
            rows.next();
            Some(h)
        }
        _ => None,
    };
    let xi = column(x_col, 0, header.as_deref(), "x")?;
    let yi = column(y_col, 1, header.as_deref(), "y")?;
    let label = |i: usize| match &header {
        Some(h) if i < h.len() => format!("column {i} ({:?})", h[i]),
        _ => format!("column {i}"),
    };
    let (mut x, mut y) = (vec![], vec![]);
    for (n, line) in rows {
        let row = cells(line);
        let get = |i: usize| -> Result<f64, CliError> {
            let cell = row.get(i).ok_or_else(|| {
                CliError(format!(
                    "{name}:{}: {} is missing (the row has {} cells)",
                    n + 1,
                    label(i),
                    row.len()
                ))
            })?;
            let v: f64 = cell.parse().map_err(|_| {
                CliError(format!(
                    "{name}:{}: {}: {cell:?} is not a number",
                    n + 1,
                    label(i)
                ))
            })?;
            if !v.is_finite() {
                return Err(CliError(format!(
                    "{name}:{}: {}: {cell} is not a finite number",
                    n + 1,
                    label(i)
                )));
            }
            Ok(v)
        };
        let (a, b) = (get(xi)?, get(yi)?);
        x.push(a);
        y.push(b);
    }
    if x.len() < 2 {
        return Err(CliError(format!(
            "{name}: needs at least 2 data rows, found {}",
            x.len()
        )));
    }
    Ok(Data {
        source: format!("{name} ({}, {})", label(xi), label(yi)),
        x,
        y,
    })
}
