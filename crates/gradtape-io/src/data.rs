//! Tabular data: CSV files (plain or gzip) with named columns, a features/target split with
//! class names mapped to integers, standardisation with training statistics, seeded splits and
//! a shuffling batch iterator (`tf.data`'s `shuffle().batch()` in spirit).

use std::path::Path;

use gradtape_core::ops;
use gradtape_core::random::Generator;
use gradtape_core::DType;
use gradtape_core::Tensor;
use gradtape_core::{Error, Result};

/// A CSV file as text cells under column names.
///
/// ```
/// let p = std::env::temp_dir().join("gradtape-doc-table.csv");
/// std::fs::write(&p, "1,2\n3,4\n").unwrap();
/// let t = gradtape::data::read_csv(&p)?;
/// assert_eq!(t.columns, vec!["0", "1"]); // no header: columns are numbered
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Table {
    /// Column names (from the header row, or `"0"`, `"1"`, ... when there is none).
    pub columns: Vec<String>,
    /// Data rows, each with one cell per column.
    pub rows: Vec<Vec<String>>,
    /// File line number of each row (for messages).
    pub lines: Vec<usize>,
    /// The path, for messages.
    pub source: String,
}

/// Reads a CSV file (`.gz` files are decompressed) with the `csv` crate: quoted cells may hold
/// commas, quotes (doubled) and line breaks; CRLF line ends and a leading UTF-8 byte-order
/// mark (Excel's "CSV UTF-8") are read as a spreadsheet means them. Cells are trimmed, blank
/// lines skipped. The first row is a header when any of its cells is not a number.
///
/// # Errors
/// When the file cannot be read, is empty, is not UTF-8, or rows have different numbers of
/// cells (the message names the file and line).
///
/// ```
/// let p = std::env::temp_dir().join("gradtape-doc-read-csv.csv");
/// std::fs::write(&p, "size,label\n1.5,\"cat, black\"\n2.5,dog\n").unwrap();
/// let t = gradtape::data::read_csv(&p)?;
/// assert_eq!(t.columns, vec!["size", "label"]);
/// assert_eq!(t.rows[0], vec!["1.5", "cat, black"]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn read_csv(path: &Path) -> Result<Table> {
    let op = "read_csv";
    let name = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(op, format!("{name}: cannot read: {e}")))?;
    let bytes = if name.ends_with(".gz") {
        let mut out = vec![];
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
            .map_err(|e| Error::io(op, format!("{name}: not a readable gzip file: {e}")))?;
        out
    } else {
        bytes
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false) // decided below: a header is a first row that is not all numbers
        .flexible(true) // ragged rows get this function's message, with both counts
        .trim(csv::Trim::All)
        .from_reader(&bytes[..]);
    // A record's position is where the reader began, before the line ends and blank lines it
    // skipped: the line a user sees is found by counting from there to the first cell.
    let (mut at, mut line) = (0usize, 1usize);
    let mut line_of = |from: usize| {
        let start = from
            + bytes[from.min(bytes.len())..]
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
        line += bytes[at.min(start)..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        at = start;
        line
    };
    let (mut records, mut numbers) = (vec![], vec![]);
    for record in reader.records() {
        let record = record.map_err(|e| {
            let at = e
                .position()
                .map_or(String::new(), |p| format!(":{}", p.line()));
            let why = match e.kind() {
                csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
                _ => e.to_string(),
            };
            Error::io(op, format!("{name}{at}: {why}"))
        })?;
        let line = record.position().map_or(0, |p| line_of(p.byte() as usize));
        // a line of spaces is one empty cell: blank, like an empty line
        if record.iter().all(str::is_empty) {
            continue;
        }
        records.push(record.iter().map(str::to_string).collect::<Vec<String>>());
        numbers.push(line);
    }
    let Some(first) = records.first() else {
        return Err(Error::io(op, format!("{name}: the file is empty")));
    };
    let columns = if first.iter().any(|c| c.parse::<f64>().is_err()) {
        numbers.remove(0);
        records.remove(0)
    } else {
        (0..first.len()).map(|i| i.to_string()).collect()
    };
    let (rows, lines) = (records, numbers);
    for (cells, n) in rows.iter().zip(&lines) {
        if cells.len() != columns.len() {
            return Err(Error::io(
                op,
                format!(
                    "{name}:{n}: the row has {} cells, the first row has {}",
                    cells.len(),
                    columns.len()
                ),
            ));
        }
    }
    Ok(Table {
        columns,
        rows,
        lines,
        source: name,
    })
}

/// What a model predicts.
///
/// ```
/// assert_ne!(gradtape::data::Task::Classification, gradtape::data::Task::Regression);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Task {
    /// Classes: the target column's distinct values, mapped to 0, 1, ...
    Classification,
    /// A number.
    Regression,
}

/// The target of a data set.
///
/// ```
/// use gradtape::data::Target;
/// let t = Target::Values(gradtape::Tensor::zeros(&[3], gradtape::DType::F32).unwrap());
/// assert!(matches!(t, Target::Values(_)));
/// ```
#[derive(Clone, Debug)]
pub enum Target {
    /// int64 class indices and the name of each class.
    Classes {
        /// `[n]` indices into `names`.
        labels: Tensor,
        /// Class names, sorted (numerically when they are all numbers).
        names: Vec<String>,
    },
    /// `[n]` target values.
    Values(Tensor),
}

/// Features and a target.
///
/// ```
/// let p = std::env::temp_dir().join("gradtape-doc-ds.csv");
/// std::fs::write(&p, "x,y\n1,2\n3,4\n").unwrap();
/// let d = gradtape::data::read_csv(&p)?.dataset("y", gradtape::data::Task::Regression, gradtape::DType::F64)?;
/// assert_eq!(d.feature_names, vec!["x"]);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `[n, features]`.
    pub features: Tensor,
    /// Names of the feature columns.
    pub feature_names: Vec<String>,
    /// The target.
    pub target: Target,
}

impl Table {
    /// Cell `column` of data row `row` (0-based) as a finite float: what every numeric
    /// column of a table is read with, so a bad cell is reported the same way everywhere.
    ///
    /// # Errors
    /// When the cell is not a number or not finite (the message names the file, the cell's
    /// line and the column), or there is no such cell.
    ///
    /// ```
    /// let p = std::env::temp_dir().join("gradtape-doc-number.csv");
    /// std::fs::write(&p, "a,b\n1,2\n3,inf\n").unwrap();
    /// let t = gradtape::data::read_csv(&p)?;
    /// assert_eq!(t.number("example", 0, 1)?, 2.0);
    /// let e = t.number("example", 1, 1).unwrap_err().to_string();
    /// assert!(e.contains(":3: column \"b\": \"inf\" is not a finite number"), "{e}");
    /// assert!(t.number("example", 2, 0).is_err()); // no third row
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn number(&self, op: &'static str, row: usize, column: usize) -> Result<f64> {
        let at = self.rows.get(row).and_then(|r| r.get(column));
        let (Some(cell), Some(line), Some(name)) =
            (at, self.lines.get(row), self.columns.get(column))
        else {
            return Err(Error::arg(
                op,
                format!(
                    "{}: no cell in row {row}, column {column} ({} rows of {} columns)",
                    self.source,
                    self.rows.len(),
                    self.columns.len()
                ),
            ));
        };
        match cell.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(Error::io(
                op,
                format!(
                    "{}:{line}: column {name:?}: {cell:?} is not a finite number",
                    self.source
                ),
            )),
        }
    }

    /// The index of a column by name.
    ///
    /// # Errors
    /// When there is no such column (the message lists the columns).
    ///
    /// ```
    /// let p = std::env::temp_dir().join("gradtape-doc-col.csv");
    /// std::fs::write(&p, "a,b\n1,2\n").unwrap();
    /// let t = gradtape::data::read_csv(&p)?;
    /// assert_eq!(t.column("b")?, 1);
    /// assert!(t.column("c").is_err());
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            Error::arg(
                "column",
                format!(
                    "{}: no column named {name:?} (columns: {})",
                    self.source,
                    self.columns.join(", ")
                ),
            )
        })
    }

    /// Refuses a target that cannot be, or is very unlikely to be, classes (the CLI's
    /// `--task regression` is the way out, so the message names it).
    fn check_classes(&self, op: &'static str, target: &str, names: &[String]) -> Result<()> {
        let n = self.rows.len();
        let refuse = |why: String| {
            Err(Error::arg(
                op,
                format!("{}: column {target:?} {why}", self.source),
            ))
        };
        if names.len() < 2 {
            let value = names.first().map(String::as_str).unwrap_or("");
            return refuse(format!(
                "has the one value {value:?} in all {n} rows: a classifier needs at least two classes to tell apart"
            ));
        }
        let numbers: Option<Vec<f64>> = names.iter().map(|s| s.parse::<f64>().ok()).collect();
        if let Some(fractional) = numbers.iter().flatten().find(|v| v.fract() != 0.0) {
            return refuse(format!(
                "holds fractional numbers such as {fractional}, so it looks like a quantity to predict, not classes: use regression (--task regression)"
            ));
        }
        if names.len() > 2 && names.len() > n / 2 {
            return refuse(format!(
                "has {} distinct values among {n} rows, so most classes would have a single example; if it is a number to predict, use regression (--task regression)",
                names.len()
            ));
        }
        Ok(())
    }

    /// Every column but `target` as float features, and `target` as classes or values.
    ///
    /// # Errors
    /// When a feature cell is not a finite number (the message gives line and column), a
    /// regression target is not a number, or a classification target is not classes: a single
    /// value, fractional numbers, or more distinct values than half the rows (a quantity to
    /// predict with [`Task::Regression`], not classes).
    ///
    /// ```
    /// use gradtape::data::{read_csv, Target, Task};
    /// let p = std::env::temp_dir().join("gradtape-doc-dataset.csv");
    /// std::fs::write(&p, "a,b,kind\n1,2,y\n3,4,x\n").unwrap();
    /// let d = read_csv(&p)?.dataset("kind", Task::Classification, gradtape::DType::F32)?;
    /// assert_eq!(d.features.shape(), &[2, 2]);
    /// let Target::Classes { labels, names } = d.target else { unreachable!() };
    /// assert_eq!(names, vec!["x", "y"]);
    /// assert_eq!(labels.to_vec::<i64>()?, vec![1, 0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn dataset(&self, target: &str, task: Task, dtype: DType) -> Result<Dataset> {
        let op = "dataset";
        if self.rows.is_empty() {
            return Err(Error::arg(
                op,
                format!(
                    "{}: the file has a header row but no data rows",
                    self.source
                ),
            ));
        }
        let t = self.column(target)?;
        let feats: Vec<usize> = (0..self.columns.len()).filter(|&i| i != t).collect();
        if feats.is_empty() {
            return Err(Error::arg(
                op,
                format!("{}: no feature columns besides {target:?}", self.source),
            ));
        }
        let number = |r: usize, c: usize| self.number(op, r, c);
        let n = self.rows.len();
        let mut x = Vec::with_capacity(n * feats.len());
        for r in 0..n {
            for &c in &feats {
                x.push(number(r, c)?);
            }
        }
        let features = Tensor::from_vec(x, &[n, feats.len()])?.cast(dtype)?;
        let target = match task {
            Task::Regression => {
                let v: Vec<f64> = (0..n).map(|r| number(r, t)).collect::<Result<_>>()?;
                Target::Values(Tensor::from_vec(v, &[n])?.cast(dtype)?)
            }
            Task::Classification => {
                let mut names: Vec<String> = self.rows.iter().map(|r| r[t].clone()).collect();
                names.sort();
                names.dedup();
                if names.iter().all(|s| s.parse::<f64>().is_ok()) {
                    names.sort_by(|a, b| {
                        a.parse::<f64>()
                            .unwrap_or(0.0)
                            .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
                    });
                }
                self.check_classes(op, target, &names)?;
                let labels: Vec<i64> = self
                    .rows
                    .iter()
                    .map(|r| names.iter().position(|s| *s == r[t]).unwrap_or(0) as i64)
                    .collect();
                Target::Classes {
                    labels: Tensor::from_vec(labels, &[n])?,
                    names,
                }
            }
        };
        Ok(Dataset {
            features,
            feature_names: feats.iter().map(|&c| self.columns[c].clone()).collect(),
            target,
        })
    }
}

/// Per-feature mean and standard deviation, measured on training data and applied to any data.
///
/// ```
/// let s = gradtape::data::Standardizer { mean: vec![1.0], std: vec![2.0] };
/// let x = gradtape::Tensor::from_vec(vec![5.0f32], &[1, 1])?;
/// assert_eq!(s.transform(&x)?.to_vec::<f32>()?, vec![2.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Mean of each feature.
    pub mean: Vec<f64>,
    /// Standard deviation of each feature; 0 for a feature that was constant, which
    /// [`Standardizer::transform`] then maps to 0 whatever its value.
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Measures a `[n, features]` tensor.
    ///
    /// # Errors
    /// When `x` is not a float matrix.
    ///
    /// ```
    /// use gradtape::data::Standardizer;
    /// let x = gradtape::Tensor::from_vec(vec![1.0f64, 5.0, 3.0, 5.0], &[2, 2])?;
    /// let s = Standardizer::fit(&x)?;
    /// assert_eq!((s.mean.clone(), s.std.clone()), (vec![2.0, 5.0], vec![1.0, 0.0]));
    /// assert_eq!(s.transform(&x)?.to_vec::<f64>()?, vec![-1.0, 0.0, 1.0, 0.0]);
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn fit(x: &Tensor) -> Result<Standardizer> {
        if x.rank() != 2 {
            return Err(Error::shape(
                "Standardizer::fit",
                format!("expected [n, features], got {:?}", x.shape()),
            ));
        }
        let x64 = x.cast(DType::F64)?;
        let mean = ops::reduce_mean(&x64, 0, false)?.to_vec::<f64>()?;
        let var = ops::reduce_mean(
            &ops::square(&ops::subtract(&x64, &ops::reduce_mean(&x64, 0, true)?)?)?,
            0,
            false,
        )?;
        let std = var
            .to_vec::<f64>()?
            .iter()
            .map(|v| if *v > 0.0 { v.sqrt() } else { 0.0 })
            .collect();
        Ok(Standardizer { mean, std })
    }

    /// One mean and standard deviation over every element of a `[n, features]` tensor, for
    /// features that are the pixels of an image: pixels are standardized together, not one by
    /// one (a pixel that is nearly always 0 would otherwise blow up where it is not).
    ///
    /// # Errors
    /// When `x` is not a float matrix.
    ///
    /// ```
    /// use gradtape::data::Standardizer;
    /// let x = gradtape::Tensor::from_vec(vec![0.0f32, 0.0, 0.0, 4.0], &[2, 2])?;
    /// let s = Standardizer::fit_global(&x)?;
    /// assert_eq!((s.mean.clone(), s.std.clone()), (vec![1.0, 1.0], vec![3f64.sqrt(); 2]));
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn fit_global(x: &Tensor) -> Result<Standardizer> {
        let per = Standardizer::fit(x)?;
        let x64 = x.cast(DType::F64)?;
        let mean = ops::reduce_mean(&x64, gradtape_core::Axes::All, false)?.item()?;
        let var = ops::reduce_mean(
            &ops::square(&ops::subtract(&x64, &mean)?)?,
            gradtape_core::Axes::All,
            false,
        )?
        .item()?;
        let std = if var > 0.0 { var.sqrt() } else { 0.0 };
        Ok(Standardizer {
            mean: vec![mean; per.mean.len()],
            std: vec![std; per.std.len()],
        })
    }

    /// `(x - mean) / std`, in `x`'s dtype.
    ///
    /// # Errors
    /// When `x` does not have as many columns as were measured.
    ///
    /// ```
    /// let s = gradtape::data::Standardizer { mean: vec![0.0, 0.0], std: vec![1.0, 1.0] };
    /// assert!(s.transform(&gradtape::Tensor::zeros(&[1, 3], gradtape::DType::F32).unwrap()).is_err());
    /// ```
    pub fn transform(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.mean.len();
        if x.rank() != 2 || x.shape()[1] != f {
            return Err(Error::shape(
                "Standardizer::transform",
                format!("expected [n, {f}], got {:?}", x.shape()),
            ));
        }
        let m = Tensor::from_vec(self.mean.clone(), &[f])?.cast(x.dtype())?;
        let safe: Vec<f64> = self
            .std
            .iter()
            .map(|&s| if s > 0.0 { s } else { 1.0 })
            .collect();
        let s = Tensor::from_vec(safe, &[f])?.cast(x.dtype())?;
        let z = ops::divide(&ops::subtract(x, &m)?, &s)?;
        if self.std.iter().all(|&s| s > 0.0) {
            return Ok(z);
        }
        // A feature that was constant in the data it was fitted on told the model nothing, and
        // its weights were never trained against any other value: it is 0 (its mean) always,
        // instead of a large number the model never saw.
        let keep: Vec<f64> = self.std.iter().map(|&s| f64::from(s > 0.0)).collect();
        ops::multiply(&z, &Tensor::from_vec(keep, &[f])?.cast(x.dtype())?)
    }
}

/// Shuffled row indices split into train, validation and test parts of the given fractions.
///
/// # Errors
/// When the fractions are negative or leave no training rows.
///
/// ```
/// let (tr, va, te) = gradtape::data::split_indices(100, 0.2, 0.1, 7)?;
/// assert_eq!((tr.len(), va.len(), te.len()), (70, 20, 10));
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn split_indices(
    n: usize,
    validation: f64,
    test: f64,
    seed: u64,
) -> Result<(Vec<i64>, Vec<i64>, Vec<i64>)> {
    if !(validation >= 0.0 && test >= 0.0 && validation + test < 1.0) {
        return Err(Error::arg("split", format!("validation {validation} and test {test} fractions must be >= 0 and leave rows to train on")));
    }
    let order = shuffled(n, &mut Generator::from_seed(seed));
    let nv = (n as f64 * validation).round() as usize;
    let nt = (n as f64 * test).round() as usize;
    if nv + nt >= n {
        return Err(Error::arg(
            "split",
            format!("{n} rows leave none to train on after {nv} validation and {nt} test rows"),
        ));
    }
    Ok((
        order[nv + nt..].to_vec(),
        order[..nv].to_vec(),
        order[nv..nv + nt].to_vec(),
    ))
}

fn shuffled(n: usize, rng: &mut Generator) -> Vec<i64> {
    let mut v: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// The rows of `t` at `indices` (a gather on axis 0).
///
/// # Errors
/// When an index is out of range.
///
/// ```
/// let t = gradtape::Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3, 1])?;
/// assert_eq!(gradtape::data::take_rows(&t, &[2, 0])?.to_vec::<f32>()?, vec![3.0, 1.0]);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub fn take_rows(t: &Tensor, indices: &[i64]) -> Result<Tensor> {
    ops::gather(t, &Tensor::from_vec(indices.to_vec(), &[indices.len()])?, 0)
}

/// One pass of batches of `(x, y)` rows, shuffled when a seed is given, the last partial
/// batch kept or dropped.
///
/// A new `Batches` with the same seed repeats the same order; for a new order each epoch
/// (tf.data's `shuffle(..., reshuffle_each_iteration=True)`), keep one `Batches` and call
/// [`Batches::reshuffle`] before each further pass: the orders still follow from the seed.
///
/// ```
/// use gradtape::data::Batches;
/// let x = gradtape::Tensor::zeros(&[10, 3], gradtape::DType::F32)?;
/// let y = gradtape::Tensor::zeros(&[10], gradtape::DType::I64)?;
/// let sizes: Vec<usize> = Batches::new(&x, &y, 4, Some(1), false)?.map(|b| b.unwrap().0.shape()[0]).collect();
/// assert_eq!(sizes, vec![4, 4, 2]);
/// assert_eq!(Batches::new(&x, &y, 4, None, true)?.count(), 2);
/// # Ok::<(), gradtape::Error>(())
/// ```
pub struct Batches {
    x: Tensor,
    y: Tensor,
    order: Vec<i64>,
    pos: usize,
    batch_size: usize,
    drop_remainder: bool,
    generator: Option<Generator>,
}

impl Batches {
    /// Batches over the rows of `x` and `y` (same number of rows).
    ///
    /// # Errors
    /// When the row counts differ or `batch_size` is 0.
    ///
    /// ```
    /// let x = gradtape::Tensor::zeros(&[3, 1], gradtape::DType::F32).unwrap();
    /// let y = gradtape::Tensor::zeros(&[2], gradtape::DType::F32).unwrap();
    /// assert!(gradtape::data::Batches::new(&x, &y, 2, None, false).is_err());
    /// ```
    pub fn new(
        x: &Tensor,
        y: &Tensor,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        drop_remainder: bool,
    ) -> Result<Batches> {
        let n = x.shape().first().copied().unwrap_or(0);
        if y.shape().first().copied().unwrap_or(0) != n || batch_size == 0 {
            return Err(Error::shape(
                "Batches",
                format!("x {:?} and y {:?} need the same number of rows, and batch_size {batch_size} > 0", x.shape(), y.shape()),
            ));
        }
        let mut generator = shuffle_seed.map(Generator::from_seed);
        let order = match &mut generator {
            Some(g) => shuffled(n, g),
            None => (0..n as i64).collect(),
        };
        Ok(Batches {
            x: x.clone(),
            y: y.clone(),
            order,
            pos: 0,
            batch_size,
            drop_remainder,
            generator,
        })
    }

    /// Starts another pass over the rows, in a new order drawn from the same generator (the
    /// same order again when no seed was given).
    ///
    /// ```
    /// use gradtape::data::Batches;
    /// let x = gradtape::Tensor::from_vec((0..8).map(|v| v as f32).collect(), &[8, 1])?;
    /// let y = gradtape::Tensor::zeros(&[8], gradtape::DType::I64)?;
    /// let order = |b: &mut Batches| -> Vec<f32> {
    ///     b.flat_map(|r| r.unwrap().0.to_vec::<f32>().unwrap()).collect()
    /// };
    /// let mut b = Batches::new(&x, &y, 3, Some(7), false)?;
    /// let first = order(&mut b);
    /// b.reshuffle();
    /// let second = order(&mut b);
    /// assert_ne!(first, second);
    /// let mut again = Batches::new(&x, &y, 3, Some(7), false)?;
    /// assert_eq!(order(&mut again), first); // same seed, same orders
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn reshuffle(&mut self) {
        if let Some(g) = &mut self.generator {
            self.order = shuffled(self.order.len(), g);
        }
        self.pos = 0;
    }
}

impl Iterator for Batches {
    type Item = Result<(Tensor, Tensor)>;
    fn next(&mut self) -> Option<Self::Item> {
        let left = self.order.len() - self.pos;
        if left == 0 || (self.drop_remainder && left < self.batch_size) {
            return None;
        }
        let idx = &self.order[self.pos..self.pos + left.min(self.batch_size)];
        self.pos += idx.len();
        Some(take_rows(&self.x, idx).and_then(|x| Ok((x, take_rows(&self.y, idx)?))))
    }
}
