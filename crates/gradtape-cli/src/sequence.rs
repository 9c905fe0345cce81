//! The rows `gradtape train --model lstm|gru` learns from, and `predict` reads again: a table
//! whose rows are sequences, or windows cut from one time series. Both become flat rows of
//! `steps · per_step` numbers (step by step), so the split, the batches, the checkpoint and the
//! scoring are the ones every model uses; only the model reshapes them.

use gradtape::data::{split_indices, Dataset, Standardizer, Table, Target, Task};
use gradtape::{ops, DType, Tensor};
use serde_json::{json, Value};

use crate::CliError;

/// How a model's rows are sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    /// Time steps per example.
    pub steps: usize,
    /// Features per time step.
    pub per_step: usize,
    /// `Some(n)`: examples are `n` consecutive rows of one series (the columns are each
    /// step's features) and the target's value in the row after them; `None`: each row is one
    /// example (the columns are its steps' features, step by step).
    pub window: Option<usize>,
    /// With a window: the column holding each row's time (for the picture), if named.
    pub time: Option<String>,
}

impl Sequence {
    /// For the model's metadata.
    pub fn to_json(&self) -> Value {
        json!({
            "steps": self.steps,
            "features_per_step": self.per_step,
            "window": self.window,
            "time": self.time,
        })
    }

    /// Read back from the metadata; `None` when it holds no sequence.
    pub fn from_json(v: &Value) -> Result<Option<Sequence>, String> {
        if v.is_null() {
            return Ok(None);
        }
        let size = |key: &str| -> Result<usize, String> {
            v[key]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| format!("the metadata's sequence has no {key} of at least 1"))
        };
        let window = match &v["window"] {
            Value::Null => None,
            _ => Some(size("window")?),
        };
        let s = Sequence {
            steps: size("steps")?,
            per_step: size("features_per_step")?,
            window,
            time: v["time"].as_str().map(String::from),
        };
        if s.window.is_some_and(|w| w != s.steps) {
            return Err("the metadata's sequence has a window unlike its steps".into());
        }
        Ok(Some(s))
    }
}

/// Every finite number of `column`, with the line of a cell that is not one.
pub fn numbers(table: &Table, column: usize) -> Result<Vec<f64>, CliError> {
    (0..table.rows.len())
        .map(|r| Ok(table.number("train", r, column)?))
        .collect()
}

/// The examples of a series: every run of `window` consecutive rows of the `inputs` columns,
/// flattened step by step, as `[rows - window, window · inputs.len()]` floats. Example `i`
/// predicts row `i + window`.
pub fn windows(table: &Table, inputs: &[usize], window: usize) -> Result<Tensor, CliError> {
    let rows = table.rows.len();
    if rows <= window {
        return Err(CliError(format!(
            "{}: {rows} rows leave no window of {window} with a next row to predict (--window must be under the number of rows)",
            table.source
        )));
    }
    let cols: Vec<Vec<f64>> = inputs
        .iter()
        .map(|&c| numbers(table, c))
        .collect::<Result<_, _>>()?;
    let m = rows - window;
    let mut x = Vec::with_capacity(m * window * inputs.len());
    for i in 0..m {
        for r in i..i + window {
            x.extend(cols.iter().map(|c| c[r]));
        }
    }
    Ok(Tensor::from_vec(x, &[m, window * inputs.len()])?.cast(DType::F32)?)
}

/// `gradtape train`'s examples of a series: windows of the `sequence` columns (the target
/// alone when none is named) and the target's next value. The time column is never an input
/// unless `sequence` names it.
pub fn window_dataset(
    table: &Table,
    target: &str,
    sequence: &[String],
    window: usize,
    time: Option<&str>,
) -> Result<(Dataset, Sequence), CliError> {
    if table.rows.is_empty() {
        return Err(CliError(format!(
            "{}: the file has a header row but no data rows",
            table.source
        )));
    }
    let t = table.column(target)?;
    if let Some(time) = time {
        numbers(table, table.column(time)?)?;
    }
    let names: Vec<String> = if sequence.is_empty() {
        vec![target.to_string()]
    } else {
        sequence.to_vec()
    };
    let inputs: Vec<usize> = names
        .iter()
        .map(|c| table.column(c))
        .collect::<Result<_, _>>()?;
    let features = windows(table, &inputs, window)?;
    let y = numbers(table, t)?;
    let next = Tensor::from_vec(y[window..].to_vec(), &[y.len() - window])?.cast(DType::F32)?;
    let seq = Sequence {
        steps: window,
        per_step: names.len(),
        window: Some(window),
        time: time.map(String::from),
    };
    let d = Dataset {
        features,
        feature_names: names,
        target: Target::Values(next),
    };
    Ok((d, seq))
}

/// A table whose rows are sequences, as a data set: the `sequence` columns (every column but
/// the target when none is named), in the order given, `per_step` consecutive columns to a
/// step. Columns that `sequence` leaves out are not read at all (an id or a date of text
/// beside the sequence is no error).
pub fn row_sequences(
    table: &Table,
    target: &str,
    task: Task,
    sequence: &[String],
    per_step: usize,
) -> Result<(Dataset, Sequence), CliError> {
    let d = if sequence.is_empty() {
        table.dataset(target, task, DType::F32)?
    } else {
        let t = table.column(target)?;
        let mut keep = Vec::with_capacity(sequence.len() + 1);
        for c in sequence {
            let i = table.column(c).map_err(|_| {
                CliError(format!(
                    "--sequence {c:?}: no such column in {} (the columns are: {})",
                    table.source,
                    table.columns.join(", ")
                ))
            })?;
            if i == t {
                return Err(CliError(format!(
                    "--sequence {c:?}: the target is not a feature column of its own sequence"
                )));
            }
            keep.push(i);
        }
        keep.push(t);
        let projected = Table {
            columns: keep.iter().map(|&i| table.columns[i].clone()).collect(),
            rows: table
                .rows
                .iter()
                .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
                .collect(),
            lines: table.lines.clone(),
            source: table.source.clone(),
        };
        projected.dataset(target, task, DType::F32)?
    };
    let columns = d.feature_names.len();
    if columns % per_step != 0 {
        return Err(CliError(format!(
            "--features-per-step {per_step}: the {columns} sequence columns do not split into steps of {per_step}"
        )));
    }
    let seq = Sequence {
        steps: columns / per_step,
        per_step,
        window: None,
        time: None,
    };
    Ok((d, seq))
}

/// Train, validation and test row indices.
pub type Split = (Vec<i64>, Vec<i64>, Vec<i64>);

/// The train, validation and test examples of a series, in time order: the same counts as
/// [`split_indices`] gives, the held-out ones last (validation, then test), as a forecast is
/// judged on a future it has not seen.
pub fn chronological_split(n: usize, validation: f64, test: f64) -> Result<Split, CliError> {
    let (tr, va, _) = split_indices(n, validation, test, 0)?;
    let (a, b) = (tr.len() as i64, (tr.len() + va.len()) as i64);
    Ok(((0..a).collect(), (a..b).collect(), (b..n as i64).collect()))
}

/// One mean and standard deviation per step feature, over every step of every training row,
/// repeated for each step: a series' value is scaled the same wherever it sits in a window.
pub fn per_step_standardizer(raw: &Tensor, per_step: usize) -> Result<Standardizer, CliError> {
    let steps = raw.shape()[1] / per_step;
    let s = Standardizer::fit(&ops::reshape(raw, &[-1, per_step as isize])?)?;
    Ok(Standardizer {
        mean: s.mean.repeat(steps),
        std: s.std.repeat(steps),
    })
}
