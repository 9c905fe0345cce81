//! The data: made like the tutorial's, or read from a CSV file with clear errors.

use std::path::Path;

use gradtape::random::Generator;
use gradtape::DType;

use gradtape::data::Table;

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

fn column(
    spec: Option<&str>,
    default: usize,
    table: &Table,
    has_header: bool,
    what: &str,
) -> Result<usize, CliError> {
    let Some(spec) = spec else { return Ok(default) };
    if let Ok(i) = spec.parse::<usize>() {
        return Ok(i);
    }
    if !has_header {
        return Err(CliError(format!(
            "--{what} {spec:?}: the file has no header row, so columns are named by 0-based index"
        )));
    }
    table.columns.iter().position(|c| c == spec).ok_or_else(|| {
        CliError(format!(
            "--{what} {spec:?}: no such column (the header has: {})",
            table.columns.join(", ")
        ))
    })
}

/// Reads two columns of a CSV file (the library's reader: plain or gzip, header optional).
/// Columns are chosen by header name or 0-based index (default: the first two).
pub fn read_csv(path: &Path, x_col: Option<&str>, y_col: Option<&str>) -> Result<Data, CliError> {
    let name = path.display();
    let table = gradtape::data::read_csv(path).map_err(|e| match e {
        gradtape::Error::Io { msg, .. } => CliError(msg),
        other => CliError(other.to_string()),
    })?;
    // Without a header row the reader names the columns "0", "1", ...
    let has_header = table
        .columns
        .iter()
        .enumerate()
        .any(|(i, c)| *c != i.to_string());
    let xi = column(x_col, 0, &table, has_header, "x")?;
    let yi = column(y_col, 1, &table, has_header, "y")?;
    let label = |i: usize| match table.columns.get(i) {
        Some(h) if has_header => format!("column {i} ({h:?})"),
        _ => format!("column {i}"),
    };
    let (mut x, mut y) = (vec![], vec![]);
    for (row, &line) in table.rows.iter().zip(&table.lines) {
        let get = |i: usize| -> Result<f64, CliError> {
            let cell = row.get(i).ok_or_else(|| {
                CliError(format!(
                    "{name}:{line}: {} is missing (the row has {} cells)",
                    label(i),
                    row.len()
                ))
            })?;
            let v: f64 = cell.parse().map_err(|_| {
                CliError(format!(
                    "{name}:{line}: {}: {cell:?} is not a number",
                    label(i)
                ))
            })?;
            if !v.is_finite() {
                return Err(CliError(format!(
                    "{name}:{line}: {}: {cell} is not a finite number",
                    label(i)
                )));
            }
            Ok(v)
        };
        x.push(get(xi)?);
        y.push(get(yi)?);
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
