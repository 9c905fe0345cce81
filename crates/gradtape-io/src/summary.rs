//! TensorBoard logs (TensorFlow's `tf.summary`): scalars and histograms written to an event
//! file that TensorBoard reads, so a long run can be watched while it trains.
//!
//! The file is TensorFlow's TFRecord framing (a length and the payload, each followed by its
//! masked CRC-32C) around protobuf `Event` messages, encoded by `prost` from the message
//! definitions of TensorFlow's `event.proto` and `summary.proto` (the fields TensorBoard reads
//! for scalars and histograms). Writes are buffered and flushed every couple of seconds and on
//! drop, so a crash loses at most the last seconds.
//!
//! ```
//! use gradtape::summary::SummaryWriter;
//! let dir = std::env::temp_dir().join(format!("gradtape-doc-summary-{}", std::process::id()));
//! let mut w = SummaryWriter::create(&dir)?;
//! for step in 0..3 {
//!     w.scalar("loss", 1.0 / (step + 1) as f64, step)?;
//! }
//! w.histogram("weights", &gradtape::Tensor::from_vec(vec![0.1f32, -0.2, 0.3], &[3])?, 2)?;
//! w.flush()?;
//! assert!(w.path().file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
//! # drop(w); std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), gradtape::Error>(())
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;

use gradtape_core::Tensor;
use gradtape_core::{Error, Result};

/// The protobuf messages TensorBoard reads, as TensorFlow defines them (field numbers from
/// `tensorflow/core/util/event.proto` and `tensorflow/core/framework/summary.proto`).
pub mod proto {
    /// One record of an event file.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// Seconds since the Unix epoch.
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        /// The training step.
        #[prost(int64, tag = "2")]
        pub step: i64,
        /// What the event holds.
        #[prost(oneof = "event::What", tags = "3, 5")]
        pub what: Option<event::What>,
    }

    /// The contents of an [`Event`].
    pub mod event {
        /// What an [`Event`](super::Event) holds.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum What {
            /// The file's format, `"brain.Event:2"`, in the first event.
            #[prost(string, tag = "3")]
            FileVersion(String),
            /// Summary values.
            #[prost(message, tag = "5")]
            Summary(super::Summary),
        }
    }

    /// Values logged at one step.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        /// The values.
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<summary::Value>,
    }

    /// The parts of a [`Summary`].
    pub mod summary {
        /// One tagged value.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Value {
            /// The name TensorBoard shows.
            #[prost(string, tag = "1")]
            pub tag: String,
            /// The value.
            #[prost(oneof = "value::Kind", tags = "2, 5")]
            pub value: Option<value::Kind>,
        }

        /// The kinds of [`Value`].
        pub mod value {
            /// A scalar or a histogram.
            #[derive(Clone, PartialEq, prost::Oneof)]
            pub enum Kind {
                /// A scalar.
                #[prost(float, tag = "2")]
                SimpleValue(f32),
                /// A histogram.
                #[prost(message, tag = "5")]
                Histo(super::super::HistogramProto),
            }
        }
    }

    /// A histogram: counts in buckets whose right edges are `bucket_limit`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramProto {
        /// Smallest value.
        #[prost(double, tag = "1")]
        pub min: f64,
        /// Largest value.
        #[prost(double, tag = "2")]
        pub max: f64,
        /// Number of values.
        #[prost(double, tag = "3")]
        pub num: f64,
        /// Their sum.
        #[prost(double, tag = "4")]
        pub sum: f64,
        /// The sum of their squares.
        #[prost(double, tag = "5")]
        pub sum_squares: f64,
        /// Right edge of each bucket.
        #[prost(double, repeated, tag = "6")]
        pub bucket_limit: Vec<f64>,
        /// Count in each bucket.
        #[prost(double, repeated, tag = "7")]
        pub bucket: Vec<f64>,
    }
}

/// TFRecord's CRC: CRC-32C, rotated and offset so that a CRC of CRCs is not trivial.
///
/// ```
/// let crc = 0xE306_9283u32; // CRC-32C of "123456789"
/// assert_eq!(gradtape::summary::masked_crc32c(b"123456789"), crc.rotate_right(15).wrapping_add(0xa282_ead8));
/// ```
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the payload, its masked CRC.
fn record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
    out
}

/// How often buffered events reach the file.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Writes one event file in a log directory (TensorFlow's `tf.summary.create_file_writer`).
pub struct SummaryWriter {
    file: BufWriter<File>,
    path: PathBuf,
    last_flush: Instant,
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::io(op, format!("{}: {e}", path.display()))
}

/// Writers made by this process, for unique file names.
static WRITERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl SummaryWriter {
    /// A new event file `events.out.tfevents.{seconds}.{host}.{pid}.{n}.v2` in `logdir` (made
    /// if missing), starting with the file-version event TensorBoard expects. `n` counts the
    /// writers this process made, so two writers never share a file, and an existing file is
    /// never overwritten.
    ///
    /// # Errors
    /// When the folder or the file cannot be made.
    ///
    /// ```
    /// let file = std::env::temp_dir().join("gradtape-doc-not-a-dir");
    /// std::fs::write(&file, b"x").unwrap();
    /// assert!(gradtape::summary::SummaryWriter::create(&file).is_err());
    /// ```
    pub fn create(logdir: impl AsRef<Path>) -> Result<SummaryWriter> {
        let op = "SummaryWriter::create";
        let dir = logdir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| io(op, dir, e))?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        // TensorFlow's names add a per-process counter and `.v2`, so that two writers made in
        // the same second by one process get two files; `create_new` makes sure an existing
        // file (another process with a recycled pid) is never truncated, only skipped.
        let (path, file) = loop {
            let n = WRITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(
                "events.out.tfevents.{}.{host}.{}.{n}.v2",
                now() as u64,
                std::process::id()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(op, &path, e)),
            }
        };
        let mut w = SummaryWriter {
            file: BufWriter::new(file),
            path,
            last_flush: Instant::now(),
        };
        w.write(proto::Event {
            wall_time: now(),
            step: 0,
            what: Some(proto::event::What::FileVersion("brain.Event:2".into())),
        })?;
        w.flush()?;
        Ok(w)
    }

    /// The event file's path.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("gradtape-doc-path-{}", std::process::id()));
    /// let w = gradtape::summary::SummaryWriter::create(&dir)?;
    /// assert!(w.path().starts_with(&dir));
    /// # drop(w); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, event: proto::Event) -> Result<()> {
        let bytes = record(&event.encode_to_vec());
        self.file
            .write_all(&bytes)
            .map_err(|e| io("SummaryWriter", &self.path, e))?;
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    fn value(&mut self, step: i64, value: proto::summary::Value) -> Result<()> {
        self.write(proto::Event {
            wall_time: now(),
            step,
            what: Some(proto::event::What::Summary(proto::Summary {
                value: vec![value],
            })),
        })
    }

    /// `tf.summary.scalar(tag, value, step)`.
    ///
    /// # Errors
    /// When the file cannot be written.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("gradtape-doc-scalar-{}", std::process::id()));
    /// let mut w = gradtape::summary::SummaryWriter::create(&dir)?;
    /// w.scalar("loss", 0.25, 7)?;
    /// w.flush()?;
    /// assert!(std::fs::metadata(w.path()).unwrap().len() > 0);
    /// # drop(w); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<()> {
        self.value(
            step,
            proto::summary::Value {
                tag: tag.to_string(),
                value: Some(proto::summary::value::Kind::SimpleValue(value as f32)),
            },
        )
    }

    /// `tf.summary.histogram(tag, values, step)`: the values' range cut into 30 equal buckets
    /// (one bucket when they are all equal). Non-finite values are left out.
    ///
    /// # Errors
    /// When `values` cannot be read (not numeric, or inside a `vmap`) or the file cannot be
    /// written.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("gradtape-doc-histo-{}", std::process::id()));
    /// let mut w = gradtape::summary::SummaryWriter::create(&dir)?;
    /// let bools = gradtape::Tensor::from_vec(vec![true], &[1])?;
    /// assert!(w.histogram("flags", &bools, 0).is_ok()); // read as 0 and 1
    /// # drop(w); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn histogram(&mut self, tag: &str, values: &Tensor, step: i64) -> Result<()> {
        let v: Vec<f64> = values
            .to_f64_vec()?
            .into_iter()
            .filter(|x| x.is_finite())
            .collect();
        self.value(
            step,
            proto::summary::Value {
                tag: tag.to_string(),
                value: Some(proto::summary::value::Kind::Histo(histogram(&v))),
            },
        )
    }

    /// Writes everything buffered to the file (also done every two seconds and on drop).
    ///
    /// # Errors
    /// When the file cannot be written.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("gradtape-doc-flush-{}", std::process::id()));
    /// let mut w = gradtape::summary::SummaryWriter::create(&dir)?;
    /// let before = std::fs::metadata(w.path()).unwrap().len();
    /// w.scalar("x", 1.0, 0)?;
    /// w.flush()?;
    /// assert!(std::fs::metadata(w.path()).unwrap().len() > before);
    /// # drop(w); std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), gradtape::Error>(())
    /// ```
    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        self.file
            .flush()
            .map_err(|e| io("SummaryWriter::flush", &self.path, e))
    }
}

impl Drop for SummaryWriter {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

/// 30 equal buckets over the values' range.
fn histogram(v: &[f64]) -> proto::HistogramProto {
    const BUCKETS: usize = 30;
    let (min, max) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let mut h = proto::HistogramProto {
        num: v.len() as f64,
        sum: v.iter().sum(),
        sum_squares: v.iter().map(|x| x * x).sum(),
        ..Default::default()
    };
    if v.is_empty() {
        return h;
    }
    (h.min, h.max) = (min, max);
    if min == max {
        h.bucket_limit = vec![max];
        h.bucket = vec![v.len() as f64];
        return h;
    }
    let width = (max - min) / BUCKETS as f64;
    h.bucket_limit = (1..=BUCKETS).map(|i| min + width * i as f64).collect();
    h.bucket_limit[BUCKETS - 1] = max;
    h.bucket = vec![0.0; BUCKETS];
    for &x in v {
        let i = (((x - min) / width) as usize).min(BUCKETS - 1);
        h.bucket[i] += 1.0;
    }
    h
}
