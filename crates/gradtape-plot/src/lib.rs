//! Charts for gradtape's command line, drawn with plotters and a font bundled in the repo
//! (DejaVu Sans, registered with plotters' pure-Rust `ab_glyph` text renderer), so no system
//! font or C library is needed. Each chart is plain data in, a PNG, SVG or GIF file out: the
//! numbers are computed elsewhere.
//!
//! ```no_run
//! use gradtape_plot::{save, CostChart, Format};
//! let chart = CostChart {
//!     costs: vec![80.0, 40.0, 25.0, 20.0],
//!     saturation_epoch: Some(3),
//!     two_decimal_epoch: None,
//!     y_label: "sum of squared errors".into(),
//! };
//! save(&chart, std::path::Path::new("cost.png"), Format::Png).unwrap();
//! ```
#![deny(missing_docs)]

use std::fmt;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// Width and height of every picture, in pixels.
pub const SIZE: (u32, u32) = (800, 600);

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static FONT_ONCE: Once = Once::new();

fn init_font() {
    FONT_ONCE.call_once(|| {
        // A failure here shows up as an error from the first text drawn.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A chart could not be drawn or written; the message says why.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotError(pub String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlotError {}

fn err<E: fmt::Display>(e: E) -> PlotError {
    PlotError(e.to_string())
}

/// Picture formats for [`save`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A PNG bitmap.
    Png,
    /// An SVG drawing (one element per marker and line).
    Svg,
}

impl Format {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// Something that draws itself on any plotters backend.
pub trait Chart {
    /// Draws the chart on `root` (already filled white).
    ///
    /// # Errors
    /// When the backend fails to draw.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static;
}

/// Writes `chart` to `path` in `format`, [`SIZE`] pixels.
///
/// # Errors
/// When drawing or writing the file fails.
pub fn save(chart: &impl Chart, path: &Path, format: Format) -> Result<(), PlotError> {
    init_font();
    match format {
        Format::Png => {
            let rgb = render(chart, SIZE)?;
            let file = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
            let mut png = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
            png.set_color(png::ColorType::Rgb);
            png.set_depth(png::BitDepth::Eight);
            let mut png = png.write_header().map_err(err)?;
            png.write_image_data(&rgb).map_err(err)?;
            png.finish().map_err(err)
        }
        Format::Svg => {
            let root = SVGBackend::new(path, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            chart.draw(&root)?;
            root.present().map_err(err)
        }
    }
}

/// Writes an animated GIF of `size` pixels, one frame per chart, `delay_ms` apart, looping.
///
/// # Errors
/// When drawing or writing the file fails, or a side of `size` is over 65,535 pixels (GIF's
/// limit).
pub fn save_gif<C: Chart>(
    frames: &[C],
    path: &Path,
    delay_ms: u32,
    size: (u32, u32),
) -> Result<(), PlotError> {
    init_font();
    let side = |n: u32| {
        u16::try_from(n).map_err(|_| {
            PlotError(format!(
                "a GIF is at most 65535 pixels wide and high, not {} x {}",
                size.0, size.1
            ))
        })
    };
    let (w, h) = (side(size.0)?, side(size.1)?);
    let file = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let mut gif = gif::Encoder::new(std::io::BufWriter::new(file), w, h, &[]).map_err(err)?;
    gif.set_repeat(gif::Repeat::Infinite).map_err(err)?;
    // GIF counts delays in hundredths of a second.
    let delay = u16::try_from(delay_ms.saturating_add(5) / 10).unwrap_or(u16::MAX);
    for chart in frames {
        let rgb = render(chart, size)?;
        // NeuQuant palette quantization at speed 10, as plotters' own GIF backend does.
        let mut frame = gif::Frame::from_rgb_speed(w, h, &rgb, 10);
        frame.delay = delay;
        gif.write_frame(&frame).map_err(err)?;
    }
    Ok(())
}

/// `chart` drawn on a white `size` bitmap: 8-bit RGB rows, top to bottom. The encoding is
/// done by the `png` and `gif` crates directly: plotters' own file encoders would bring in
/// the whole `image` crate, a tenth of a clean build.
fn render(chart: &impl Chart, size: (u32, u32)) -> Result<Vec<u8>, PlotError> {
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        chart.draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(rgb)
}

fn io_err(path: &Path, e: std::io::Error) -> PlotError {
    PlotError(format!("cannot write {}: {e}", path.display()))
}

/// `[lo, hi]` widened by 5% on each side (and made non-empty).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// A tick label as a person writes it: four significant digits at most, no `-0`, no `.0` on
/// whole numbers, and `k`/`M` for thousands and millions (`100000.0` became `100k`).
pub fn tick(v: f64) -> String {
    tick_in(v, v.abs())
}

/// [`tick`] with the `k`/`M` unit chosen by the axis's largest value `top`, so one axis does
/// not mix `8000` and `16k`.
fn tick_in(v: f64, top: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let (scaled, suffix) = match top {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e4 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let magnitude = if scaled == 0.0 {
        0
    } else {
        scaled.abs().log10().floor() as i32
    };
    let decimals = (3 - magnitude).clamp(0, 6) as usize;
    let decimals = if suffix.is_empty() {
        decimals
    } else {
        decimals.min(1)
    };
    let mut text = format!("{scaled:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if text == "-0" {
        text = "0".into();
    }
    if text == "0" {
        return text;
    }
    text + suffix
}

/// The tick formatter of an axis from `lo` to `hi`.
fn axis_ticks(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let top = lo.abs().max(hi.abs());
    move |v| tick_in(*v, top)
}

/// The series legend every chart draws, in one style.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

const FIT_RED: RGBColor = RGBColor(255, 0, 0);
const POINT_BLUE: RGBColor = RGBColor(31, 119, 180);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
/// The descent path on the landscape, and its legend sample: orange reads on every band of
/// the ramp (a white path had a black legend sample).
pub const PATH_COLOR: RGBColor = ORANGE;
/// A titled x–y plane over the given ranges with its grid, tick labels and axis names: what
/// the fit and band charts draw on.
fn plane<'a, DB: DrawingBackend + 'a>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    (x_desc, y_desc): (&str, &str),
) -> Result<
    ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    PlotError,
>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&axis_ticks(x0, x1))
        .y_label_formatter(&axis_ticks(y0, y1))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// The least-squares reference drawn in the fit and parameter charts.
const REFERENCE: RGBColor = RGBColor(120, 120, 120);

/// The data as a scatter plot with the fitted line `y = a + b·x` (red, dashed, as in the seed),
/// the lines of earlier epochs (light to dark as training goes), and the least-squares line.
pub struct FitChart {
    /// The independent variable.
    pub x: Vec<f64>,
    /// The dependent variable.
    pub y: Vec<f64>,
    /// `(a, b)` of earlier epochs (a few of them drawn when there are many).
    pub history: Vec<(f64, f64)>,
    /// The fitted `(a, b)`.
    pub fitted: (f64, f64),
    /// The exact least-squares `(a, b)`, drawn for reference.
    pub reference: Option<(f64, f64)>,
    /// The caption.
    pub title: String,
}

impl Chart for FitChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let (x0, x1) = padded(self.x.iter().copied());
        let line = |(a, b): (f64, f64)| [(x0, a + b * x0), (x1, a + b * x1)];
        let ys = self.y.iter().copied().chain(line(self.fitted).map(|p| p.1));
        let (y0, y1) = padded(ys);
        let mut chart = plane(
            root,
            &self.title,
            (x0, x1),
            (y0, y1),
            ("Independent", "dependent"),
        )?;
        let step = (self.history.len() / 12).max(1);
        let drawn: Vec<(f64, f64)> = self.history.iter().step_by(step).copied().collect();
        for (i, &ab) in drawn.iter().enumerate() {
            // early epochs light, later ones darker: the line's movement reads as time
            let t = (i + 1) as f64 / drawn.len() as f64;
            let series = chart
                .draw_series(LineSeries::new(
                    line(ab),
                    ORANGE.mix(0.25 + 0.45 * t).stroke_width(2),
                ))
                .map_err(err)?;
            if i + 1 == drawn.len() {
                series.label("earlier epochs").legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], ORANGE.mix(0.6).stroke_width(2))
                });
            }
        }
        if let Some((a, b)) = self.reference {
            chart
                .draw_series(LineSeries::new(line((a, b)), REFERENCE.stroke_width(2)))
                .map_err(err)?
                .label(format!("least squares: y = {a:.4} + {b:.4}·x"))
                .legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], REFERENCE.stroke_width(2))
                });
        }
        chart
            .draw_series(
                self.x
                    .iter()
                    .zip(&self.y)
                    .map(|(&x, &y)| Circle::new((x, y), 3, POINT_BLUE.mix(0.7).filled())),
            )
            .map_err(err)?
            .label("data")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, POINT_BLUE.filled()));
        let (a, b) = self.fitted;
        chart
            .draw_series(DashedLineSeries::new(
                line(self.fitted),
                10,
                6,
                FIT_RED.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("fitted: y = {a:.4} + {b:.4}·x"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FIT_RED.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// A regression with its uncertainty: the data as points, the predicted mean as a line and a
/// band of ±2 standard deviations around it (a Gaussian process's posterior, say).
pub struct BandChart {
    /// The data's inputs.
    pub x: Vec<f64>,
    /// The data's targets.
    pub y: Vec<f64>,
    /// Where the prediction is drawn, increasing.
    pub grid: Vec<f64>,
    /// The predicted mean at each grid point.
    pub mean: Vec<f64>,
    /// The predicted standard deviation at each grid point.
    pub std: Vec<f64>,
    /// The caption.
    pub title: String,
}

impl Chart for BandChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let (x0, x1) = padded(self.x.iter().chain(&self.grid).copied());
        let lower: Vec<(f64, f64)> = self
            .grid
            .iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(&g, (&m, &s))| (g, m - 2.0 * s))
            .collect();
        let upper: Vec<(f64, f64)> = self
            .grid
            .iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(&g, (&m, &s))| (g, m + 2.0 * s))
            .collect();
        let ys = self
            .y
            .iter()
            .copied()
            .chain(lower.iter().chain(&upper).map(|p| p.1));
        let (y0, y1) = padded(ys);
        let mut chart = plane(root, &self.title, (x0, x1), (y0, y1), ("x", "y"))?;
        let band: Vec<(f64, f64)> = upper.iter().chain(lower.iter().rev()).copied().collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                ORANGE.mix(0.25).filled(),
            )))
            .map_err(err)?
            .label("mean ± 2 standard deviations")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], ORANGE.mix(0.25).filled())
            });
        chart
            .draw_series(LineSeries::new(
                self.grid.iter().copied().zip(self.mean.iter().copied()),
                FIT_RED.stroke_width(2),
            ))
            .map_err(err)?
            .label("predicted mean")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FIT_RED.stroke_width(2)));
        chart
            .draw_series(
                self.x
                    .iter()
                    .zip(&self.y)
                    .map(|(&x, &y)| Circle::new((x, y), 3, POINT_BLUE.mix(0.8).filled())),
            )
            .map_err(err)?
            .label("data")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, POINT_BLUE.filled()));
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// The cost per epoch on a log axis, the two readings of saturation marked, and an inset of
/// the tail on a linear axis (where the last few tenths of the cost are decided).
pub struct CostChart {
    /// Cost evaluated at the start of each epoch.
    pub costs: Vec<f64>,
    /// The first epoch whose cost is within 1% of the final cost.
    pub saturation_epoch: Option<usize>,
    /// The first epoch from which the cost printed with two decimals no longer changes.
    pub two_decimal_epoch: Option<usize>,
    /// What the cost is, for the y axis (such as "sum of squared errors").
    pub y_label: String,
}

/// The epochs the cost chart's inset shows: from the 1% saturation epoch to the end, when
/// there are at least 3 of them.
fn inset_range(costs: &[f64], saturation: Option<usize>) -> Option<(usize, usize)> {
    let s = saturation?;
    (costs.len() >= s + 3).then_some((s, costs.len() - 1))
}

/// Round values (1, 1.5, 2, 3, ... 9 times a power of ten) between `lo` and `hi`, at most about
/// ten of them: the labels of a log axis.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = vec![];
    if !(lo > 0.0 && hi > lo) {
        return v;
    }
    for k in lo.log10().floor() as i32..=hi.log10().ceil() as i32 {
        for m in [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0] {
            let t = m * 10f64.powi(k);
            if t >= lo && t <= hi {
                v.push(t);
            }
        }
    }
    let keep = v.len().div_ceil(10).max(1);
    v.into_iter().step_by(keep).collect()
}

impl Chart for CostChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let n = self.costs.len().max(2);
        // A log axis when every cost is positive: the drop over the first epochs and the
        // last tenths both show (on a linear axis from 17 to 100 everything after epoch 3
        // was one flat line). Drawn as log10 values with round labels.
        let log = self.costs.iter().all(|&c| c > 0.0 && c.is_finite());
        let f = |c: f64| if log { c.log10() } else { c };
        let (y0, y1) = padded(self.costs.iter().map(|&c| f(c)));
        let keys: Vec<f64> = match log {
            true => log_ticks(10f64.powf(y0), 10f64.powf(y1))
                .into_iter()
                .map(f64::log10)
                .collect(),
            false => vec![],
        };
        let top = if log {
            10f64.powf(y1)
        } else {
            y0.abs().max(y1.abs())
        };
        let label = |v: &f64| tick_in(if log { 10f64.powf(*v) } else { *v }, top);
        let points = || self.costs.iter().enumerate().map(|(e, &c)| (e as f64, c));
        let marks = [
            (
                self.saturation_epoch,
                FIT_RED,
                "within 1% of the final cost",
            ),
            (
                self.two_decimal_epoch,
                GREEN,
                "two-decimal cost stops changing",
            ),
        ];
        let desc = match log {
            true => format!("cost: {} (log scale)", self.y_label),
            false => format!("cost: {}", self.y_label),
        };
        let mut chart = ChartBuilder::on(root)
            .caption("Cost per epoch", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..(n - 1) as f64, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_label_formatter(&|v| tick(*v))
            .y_desc(desc)
            .y_labels(if log { 0 } else { 8 })
            .y_label_formatter(&label)
            .light_line_style(BLACK.mix(0.04))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        // plotters labels a log axis at powers of ten only (one label here): round values
        // are drawn by hand, with their grid lines
        let style = TextStyle::from(("sans-serif", 14).into_font())
            .pos(Pos::new(HPos::Right, VPos::Center));
        for &k in &keys {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, k), ((n - 1) as f64, k)],
                    BLACK.mix(0.15),
                ))
                .map_err(err)?;
            let (x, y) = chart.backend_coord(&(0.0, k));
            root.draw_text(&label(&k), &style, (x - 8, y))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(
                points().map(|(e, c)| (e, f(c))),
                POINT_BLUE.stroke_width(2),
            ))
            .map_err(err)?
            .label("cost")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], POINT_BLUE.stroke_width(2)));
        for (epoch, color, what) in marks {
            let Some(s) = epoch.filter(|&s| s < self.costs.len()) else {
                continue;
            };
            chart
                .draw_series(DashedLineSeries::new(
                    [(s as f64, y0), (s as f64, y1)],
                    6,
                    4,
                    color.stroke_width(1),
                ))
                .map_err(err)?
                .label(format!("epoch {s}: {what}"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series([Circle::new((s as f64, f(self.costs[s])), 5, color.filled())])
                .map_err(err)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        let Some((from, to)) = inset_range(&self.costs, self.saturation_epoch) else {
            return Ok(());
        };
        let (w, h) = root.dim_in_pixel();
        let inset = root
            .clone()
            .shrink((w * 2 / 5, h * 7 / 20), (w / 2, h * 2 / 5));
        inset.fill(&WHITE).map_err(err)?;
        let (t0, t1) = padded(self.costs[from..=to].iter().copied());
        let mut chart = ChartBuilder::on(&inset)
            .caption(
                format!("epochs {from}–{to}, linear scale"),
                ("sans-serif", 14),
            )
            .margin(6)
            .x_label_area_size(24)
            .y_label_area_size(52)
            .build_cartesian_2d(from as f64..to as f64, t0..t1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&axis_ticks(t0, t1))
            .x_labels(6)
            .y_labels(5)
            .light_line_style(TRANSPARENT)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                points().skip(from),
                POINT_BLUE.stroke_width(2),
            ))
            .map_err(err)?;
        for (epoch, color, _) in marks {
            if let Some(s) = epoch.filter(|&s| s >= from && s <= to) {
                chart
                    .draw_series([Circle::new((s as f64, self.costs[s]), 4, color.filled())])
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// `a` and `b` per epoch, with the least-squares values they approach.
pub struct ParamsChart {
    /// `a` at the start of each epoch.
    pub a: Vec<f64>,
    /// `b` at the start of each epoch.
    pub b: Vec<f64>,
    /// The least-squares `(a, b)`, drawn as dashed lines in the same colours.
    pub reference: Option<(f64, f64)>,
}

impl Chart for ParamsChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let n = self.a.len().max(2);
        let refs = self.reference.into_iter().flat_map(|(a, b)| [a, b]);
        let (y0, y1) = padded(self.a.iter().chain(&self.b).copied().chain(refs));
        let mut chart = ChartBuilder::on(root)
            .caption("Parameters per epoch", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..(n - 1) as f64, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&axis_ticks(y0, y1))
            .y_desc("value")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        let reference = self.reference.map(|(a, b)| [a, b]);
        let series = [("a", &self.a, POINT_BLUE), ("b", &self.b, GREEN)];
        for (i, (name, vals, color)) in series.into_iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    vals.iter().enumerate().map(|(e, &v)| (e as f64, v)),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if let Some(r) = reference.map(|r| r[i]) {
                chart
                    .draw_series(DashedLineSeries::new(
                        [(0.0, r), ((n - 1) as f64, r)],
                        8,
                        5,
                        color.mix(0.8).stroke_width(1),
                    ))
                    .map_err(err)?
                    .label(format!("{name} least squares: {}", tick(r)))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.mix(0.8).stroke_width(1))
                    });
            }
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// The loss over a grid of `(a, b)` as filled contour bands, with the descent path on top and
/// a colour bar giving each band's loss.
pub struct LandscapeChart {
    /// Grid values of `a` (horizontal axis), increasing.
    pub a_grid: Vec<f64>,
    /// Grid values of `b` (vertical axis), increasing.
    pub b_grid: Vec<f64>,
    /// `loss[i][j]` at `(a_grid[i], b_grid[j])`.
    pub loss: Vec<Vec<f64>>,
    /// `(a, b)` at each epoch, in order.
    pub path: Vec<(f64, f64)>,
    /// The exact minimum, marked with a cross.
    pub optimum: Option<(f64, f64)>,
}

/// A blue-to-yellow ramp (viridis-like) for `t` in `[0, 1]`.
fn ramp(t: f64) -> RGBColor {
    let stops = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let i = (t.floor() as usize).min(stops.len() - 2);
    let f = t - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Contour levels of the landscape (bands of equal width in log(loss)).
const LEVELS: f64 = 14.0;
/// Width of the landscape's colour bar, in pixels.
const BAR_WIDTH: u32 = 110;

/// The value at fractional grid position `(u, v)` by bilinear interpolation.
fn bilinear(grid: &[Vec<f64>], u: f64, v: f64) -> f64 {
    let (ni, nj) = (grid.len(), grid[0].len());
    let i = (u.floor().max(0.0) as usize).min(ni - 2);
    let j = (v.floor().max(0.0) as usize).min(nj - 2);
    let (fu, fv) = (u - i as f64, v - j as f64);
    let at = |di: usize, dj: usize| grid[i + di][j + dj];
    (at(0, 0) * (1.0 - fv) + at(0, 1) * fv) * (1.0 - fu)
        + (at(1, 0) * (1.0 - fv) + at(1, 1) * fv) * fu
}

impl LandscapeChart {
    fn log_loss(&self) -> Vec<Vec<f64>> {
        self.loss
            .iter()
            .map(|r| r.iter().map(|v| v.max(1e-300).ln()).collect())
            .collect()
    }

    /// The bands at pixel resolution, each pixel row as runs of one band:
    /// `(row, first column, end column, band)` over a `w` x `h` plotting area (row 0 at the
    /// top). Interpolating log(loss) per pixel gives smooth band edges where whole grid cells
    /// gave blocky steps; runs keep an SVG small.
    fn band_runs(&self, w: u32, h: u32, lo: f64, hi: f64) -> Vec<(u32, u32, u32, usize)> {
        let logs = self.log_loss();
        let (ni, nj) = (logs.len() as f64 - 1.0, logs[0].len() as f64 - 1.0);
        let band = |v: f64| {
            ((((v - lo) / (hi - lo)) * LEVELS).floor().max(0.0) as usize).min(LEVELS as usize - 1)
        };
        let mut runs = vec![];
        for row in 0..h {
            let v = nj * (1.0 - (row as f64 + 0.5) / h as f64);
            let mut start = 0;
            let mut current = None;
            for col in 0..w {
                let u = ni * (col as f64 + 0.5) / w as f64;
                let b = band(bilinear(&logs, u, v));
                if current != Some(b) {
                    if let Some(c) = current {
                        runs.push((row, start, col, c));
                    }
                    (start, current) = (col, Some(b));
                }
            }
            if let Some(c) = current {
                runs.push((row, start, w, c));
            }
        }
        runs
    }
}

impl Chart for LandscapeChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let (na, nb) = (self.a_grid.len(), self.b_grid.len());
        if na < 2 || nb < 2 || self.loss.len() != na || self.loss.iter().any(|r| r.len() != nb) {
            return Err(PlotError(
                "landscape: the loss grid needs at least 2 x 2 points, one per (a, b)".into(),
            ));
        }
        let (a0, a1) = (self.a_grid[0], self.a_grid[na - 1]);
        let (b0, b1) = (self.b_grid[0], self.b_grid[nb - 1]);
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w.saturating_sub(BAR_WIDTH));
        let mut chart = ChartBuilder::on(&main)
            .caption("Loss landscape and descent path", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(a0..a1, b0..b1)
            .map_err(err)?;
        let (lo, hi) = padded(self.log_loss().iter().flatten().copied());
        let (pw, ph) = chart.plotting_area().dim_in_pixel();
        let (pa, pb) = ((a1 - a0) / pw as f64, (b1 - b0) / ph as f64);
        chart
            .draw_series(
                self.band_runs(pw, ph, lo, hi)
                    .into_iter()
                    .map(|(row, c0, c1, band)| {
                        let top = b1 - row as f64 * pb;
                        Rectangle::new(
                            [(a0 + c0 as f64 * pa, top), (a0 + c1 as f64 * pa, top - pb)],
                            ramp(band as f64 / LEVELS).filled(),
                        )
                    }),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("a (intercept)")
            .y_desc("b (slope)")
            .x_label_formatter(&axis_ticks(a0, a1))
            .y_label_formatter(&axis_ticks(b0, b1))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                self.path.iter().copied(),
                PATH_COLOR.stroke_width(2),
            ))
            .map_err(err)?
            .label("descent path")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], PATH_COLOR.stroke_width(2)));
        chart
            .draw_series(
                self.path
                    .iter()
                    .map(|&p| Circle::new(p, 2, PATH_COLOR.filled())),
            )
            .map_err(err)?;
        if let Some(&last) = self.path.last() {
            chart
                .draw_series([Circle::new(last, 5, FIT_RED.filled())])
                .map_err(err)?
                .label("last epoch")
                .legend(|(x, y)| Circle::new((x + 10, y), 5, FIT_RED.filled()));
        }
        if let Some(o) = self.optimum {
            // white with a black edge: it shows on the dark bands and on the legend's white
            let marker = |size: i32| {
                EmptyElement::at((0, 0))
                    + Cross::new((0, 0), size, BLACK.stroke_width(4))
                    + Cross::new((0, 0), size, WHITE.stroke_width(2))
            };
            chart
                .draw_series([EmptyElement::at(o) + marker(7)])
                .map_err(err)?
                .label("least-squares minimum")
                .legend(move |(x, y)| EmptyElement::at((x + 10, y)) + marker(5));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        // The colour bar: one box per band, labelled with the loss (not its logarithm).
        let mut scale = ChartBuilder::on(&bar)
            .caption("loss", ("sans-serif", 16))
            .margin_top(50)
            .margin_bottom(60)
            .margin_left(8)
            .margin_right(4)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0f64..1f64, lo..hi)
            .map_err(err)?;
        let step = (hi - lo) / LEVELS;
        scale
            .draw_series((0..LEVELS as usize).map(|k| {
                let from = lo + k as f64 * step;
                Rectangle::new(
                    [(0.0, from), (1.0, from + step)],
                    ramp(k as f64 / LEVELS).filled(),
                )
            }))
            .map_err(err)?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(0)
            .draw()
            .map_err(err)?;
        // round loss values, placed on the log scale the bands use
        let style =
            TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for t in log_ticks(lo.exp(), hi.exp()) {
            let (x, y) = scale.backend_coord(&(1.0, t.ln()));
            // backend coordinates are the whole picture's, as `root` draws
            root.draw(&PathElement::new([(x, y), (x + 4, y)], BLACK))
                .map_err(err)?;
            root.draw_text(&tick_in(t, hi.exp()), &style, (x + 7, y))
                .map_err(err)?;
        }
        Ok(())
    }
}

/// A time series and a model's one-step-ahead predictions of it, with the held-out stretch
/// (validation and test, the series' end) shaded: where a forecast is honest.
pub struct SeriesChart {
    /// The time of each observation, increasing.
    pub time: Vec<f64>,
    /// The observed values.
    pub truth: Vec<f64>,
    /// The times that have a prediction (a window's next step), increasing.
    pub predicted_time: Vec<f64>,
    /// The prediction at each of those times.
    pub predicted: Vec<f64>,
    /// Where the held-out stretch starts, when there is one.
    pub held_out_from: Option<f64>,
    /// What the time axis counts (a column's name, or "row").
    pub time_name: String,
    /// What the values are.
    pub value_name: String,
    /// The caption.
    pub title: String,
}

impl Chart for SeriesChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let (x0, x1) = padded(self.time.iter().chain(&self.predicted_time).copied());
        let (y0, y1) = padded(self.truth.iter().chain(&self.predicted).copied());
        let mut chart = plane(
            root,
            &self.title,
            (x0, x1),
            (y0, y1),
            (&self.time_name, &self.value_name),
        )?;
        if let Some(from) = self.held_out_from {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(from, y0), (x1, y1)],
                    REFERENCE.mix(0.15).filled(),
                )))
                .map_err(err)?
                .label("held out (validation, test)")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], REFERENCE.mix(0.15).filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                self.time.iter().copied().zip(self.truth.iter().copied()),
                POINT_BLUE.stroke_width(2),
            ))
            .map_err(err)?
            .label("truth")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], POINT_BLUE.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                self.predicted_time
                    .iter()
                    .copied()
                    .zip(self.predicted.iter().copied()),
                FIT_RED.stroke_width(2),
            ))
            .map_err(err)?
            .label("predicted (one step ahead)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FIT_RED.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// Training curves: loss (left) and accuracy (right) per epoch, training and validation.
pub struct CurvesChart {
    /// Training loss per epoch.
    pub train_loss: Vec<f64>,
    /// Validation loss per epoch, when there is validation data.
    pub val_loss: Option<Vec<f64>>,
    /// Training accuracy per epoch (classification).
    pub train_accuracy: Option<Vec<f64>>,
    /// Validation accuracy per epoch (classification).
    pub val_accuracy: Option<Vec<f64>>,
    /// What the loss is, for its axis (such as "cross-entropy").
    pub loss_name: String,
}

fn curve_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    train: &[f64],
    val: Option<&Vec<f64>>,
    position: SeriesLabelPosition,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let n = train.len().max(2);
    let (y0, y1) = padded(train.iter().chain(val.into_iter().flatten()).copied());
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(1f64..n as f64, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&axis_ticks(y0, y1))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            train.iter().enumerate().map(|(e, &v)| (e as f64 + 1.0, v)),
            POINT_BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("train")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], POINT_BLUE.stroke_width(2)));
    if let Some(v) = val {
        chart
            .draw_series(LineSeries::new(
                v.iter().enumerate().map(|(e, &v)| (e as f64 + 1.0, v)),
                ORANGE.stroke_width(2),
            ))
            .map_err(err)?
            .label("validation")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], ORANGE.stroke_width(2)));
    }
    legend(&mut chart, position)
}

impl Chart for CurvesChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        // Loss falls and accuracy rises: each legend goes where its curves are not (in the
        // upper right it hid the accuracy lines near 1.0).
        let (loss_at, acc_at) = (
            SeriesLabelPosition::UpperRight,
            SeriesLabelPosition::LowerRight,
        );
        match &self.train_accuracy {
            Some(acc) => {
                let (left, right) = root.split_horizontally(SIZE.0 / 2);
                let val = self.val_loss.as_ref();
                curve_panel(
                    &left,
                    "Loss",
                    &self.loss_name,
                    &self.train_loss,
                    val,
                    loss_at,
                )?;
                let val = self.val_accuracy.as_ref();
                curve_panel(&right, "Accuracy", "fraction right", acc, val, acc_at)
            }
            None => {
                let val = self.val_loss.as_ref();
                curve_panel(
                    root,
                    "Loss",
                    &self.loss_name,
                    &self.train_loss,
                    val,
                    loss_at,
                )
            }
        }
    }
}

/// A confusion matrix: rows are true classes, columns predicted ones, with counts.
pub struct ConfusionChart {
    /// `matrix[true][predicted]` counts.
    pub matrix: Vec<Vec<u64>>,
    /// Class names.
    pub names: Vec<String>,
    /// The caption.
    pub title: String,
}

/// Font size of the class names and of the axis descriptions of a confusion chart.
const NAME_FONT: u32 = 13;
const DESC_FONT: u32 = 14;

/// Horizontal layout of a confusion chart's left label area, in pixels from its left edge:
/// the rotated description ("true") occupies `0..desc_end`, the class names
/// `names_start..width` (right-aligned at the axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelArea {
    /// Where the description's box ends.
    pub desc_end: u32,
    /// Where the widest class name begins.
    pub names_start: u32,
    /// The label area's width.
    pub width: u32,
}

/// Distance plotters keeps between a tick label and the axis.
const LABEL_GAP: u32 = 5;

impl ConfusionChart {
    /// The left label area, sized to the widest class name so the description never covers
    /// one (a fixed 64 pixels drew "true" over "versicolor").
    ///
    /// # Errors
    /// When the font cannot measure a name.
    pub fn label_area(&self) -> Result<LabelArea, PlotError> {
        init_font();
        let font = ("sans-serif", NAME_FONT).into_font();
        let widest = self
            .names
            .iter()
            .map(|n| font.box_size(n).map(|(w, _)| w))
            .try_fold(0, |m, w| w.map(|w| m.max(w)))
            .map_err(err)?;
        let desc = ("sans-serif", DESC_FONT)
            .into_font()
            .box_size("true")
            .map_err(err)?;
        // rotated, the description is as wide as its text is tall
        let desc_end = desc.1 + 4;
        let width = desc_end + 6 + widest + LABEL_GAP + 4;
        Ok(LabelArea {
            desc_end,
            names_start: width - LABEL_GAP - 4 - widest,
            width,
        })
    }
}

impl Chart for ConfusionChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let k = self.matrix.len().max(1);
        let max = self
            .matrix
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let area = self.label_area()?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(area.width)
            .build_cartesian_2d(0f64..k as f64, 0f64..k as f64)
            .map_err(err)?;
        // Labels sit at cell centres; rows are drawn from the top, so the y axis counts down.
        let name_at = |v: f64, flip: bool| {
            if (v - v.floor() - 0.5).abs() > 1e-9 || v < 0.0 {
                return String::new();
            }
            let i = v.floor() as usize;
            let i = if flip { (k - 1).saturating_sub(i) } else { i };
            self.names.get(i).cloned().unwrap_or_default()
        };
        let x_label = |v: &f64| name_at(*v, false);
        let y_label = |v: &f64| name_at(*v, true);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true")
            .axis_desc_style(("sans-serif", DESC_FONT))
            .x_labels(2 * k + 1)
            .y_labels(2 * k + 1)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .label_style(("sans-serif", NAME_FONT))
            .draw()
            .map_err(err)?;
        for (i, row) in self.matrix.iter().enumerate() {
            for (j, &c) in row.iter().enumerate() {
                // row i is drawn from the top
                let y = (k - 1 - i) as f64;
                let t = c as f64 / max;
                chart
                    .draw_series([Rectangle::new(
                        [(j as f64, y), (j as f64 + 1.0, y + 1.0)],
                        ramp(t).filled(),
                    )])
                    .map_err(err)?;
                let color = if t > 0.6 { BLACK } else { WHITE };
                let centred = TextStyle::from(("sans-serif", 14).into_font())
                    .color(&color)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series([Text::new(c.to_string(), (j as f64 + 0.5, y + 0.5), centred)])
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The band is drawn as a filled area around the mean, which is drawn in red on top: the
    /// pixel on the mean's line is red, one between the band's edges and the line is the
    /// band's tint, and one far above the band is white.
    #[test]
    fn band_chart_fills_between_the_edges() {
        init_font();
        let grid: Vec<f64> = (0..50).map(|i| i as f64 / 49.0).collect();
        let chart = BandChart {
            x: vec![0.0, 1.0],
            y: vec![-3.0, 3.0],
            mean: vec![0.0; 50],
            std: vec![1.0; 50],
            grid,
            title: String::new(),
        };
        let (w, h) = (400u32, 300u32);
        let rgb = render(&chart, (w, h)).unwrap();
        let px = |x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            (rgb[i], rgb[i + 1], rgb[i + 2])
        };
        // the column through the middle of the plot: find the red line, then look above it
        let x = w / 2 + 20;
        let red = (0..h).find(|&y| matches!(px(x, y), (r, g, b) if r > 200 && g < 80 && b < 80));
        let red = red.expect("the mean's line is drawn");
        let tinted = px(x, red - 12);
        assert!(
            tinted.0 > 240 && tinted.2 < 230,
            "{tinted:?} inside the band"
        );
        let far = (0..red - 12)
            .map(|y| px(x, y))
            .filter(|&p| p == (255, 255, 255))
            .count();
        assert!(far > 0, "white above the band");
    }

    #[test]
    fn padding_handles_constant_and_empty_data() {
        assert_eq!(padded([2.0, 2.0].into_iter()), (1.5, 2.5));
        assert_eq!(padded(std::iter::empty()), (0.0, 1.0));
        let (lo, hi) = padded([0.0, 10.0].into_iter());
        assert!(lo < 0.0 && hi > 10.0);
    }

    #[test]
    fn ramp_spans_the_palette() {
        assert_eq!(ramp(0.0), RGBColor(68, 1, 84));
        assert_eq!(ramp(1.0), RGBColor(253, 231, 37));
    }

    #[test]
    fn ticks_read_as_a_person_writes_them() {
        for (v, want) in [
            (-0.0, "0"),
            (-1e-17, "0"),
            (100.0, "100"),
            (0.30000000000000004, "0.3"),
            (20.55, "20.55"),
            (-0.25, "-0.25"),
            (100000.0, "100k"),
            (2_500_000.0, "2.5M"),
            (12_000.0, "12k"),
            (0.000123, "0.000123"),
        ] {
            assert_eq!(tick(v), want, "{v}");
        }
        // one unit per axis: a regression loss axis to 16k said 8000 beside 16k
        let axis = axis_ticks(0.0, 16_000.0);
        assert_eq!(
            [axis(&8000.0), axis(&16_000.0), axis(&0.0)],
            ["8k", "16k", "0"]
        );
        assert_eq!(axis_ticks(0.0, 1.0)(&0.5), "0.5");
    }

    #[test]
    fn log_ticks_are_round_values_inside_the_range() {
        assert_eq!(
            log_ticks(18.5, 105.0),
            [20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
        );
        let wide = log_ticks(0.01, 1e6);
        assert!(wide.len() <= 10 && wide.contains(&0.01), "{wide:?}");
        assert!(log_ticks(-1.0, 5.0).is_empty());
    }

    /// Issue 20: "true" was drawn over the first class name; the label area now holds the
    /// widest name beside the description.
    #[test]
    fn the_confusion_description_never_covers_a_class_name() {
        for names in [
            vec!["a", "b"],
            vec!["Iris-setosa", "Iris-versicolor", "virginica"],
        ] {
            let chart = ConfusionChart {
                matrix: vec![vec![1; names.len()]; names.len()],
                names: names.iter().map(|n| n.to_string()).collect(),
                title: "t".into(),
            };
            let area = chart.label_area().unwrap();
            assert!(area.desc_end < area.names_start, "{names:?}: {area:?}");
            assert!(area.names_start < area.width);
        }
        let long = ConfusionChart {
            matrix: vec![vec![1]],
            names: vec!["Iris-versicolor".into()],
            title: "t".into(),
        };
        // the fixed 64 pixels of before could not hold this name and the description
        assert!(long.label_area().unwrap().width > 64);
    }

    /// Issue 20: the legend drew the path black while the path was white. Both are strokes
    /// of `PATH_COLOR` in the SVG: the 20-pixel legend sample and the path itself.
    #[test]
    fn the_landscape_legend_shows_the_path_in_the_path_colour() {
        let dir = std::env::temp_dir().join(format!("gradtape-plot-land-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("landscape.svg");
        let grid: Vec<f64> = (0..20).map(|i| i as f64 / 19.0).collect();
        let chart = LandscapeChart {
            loss: grid
                .iter()
                .map(|a| {
                    grid.iter()
                        .map(|b| 1.0 + (a - 0.7).powi(2) + (b - 0.3).powi(2))
                        .collect()
                })
                .collect(),
            a_grid: grid.clone(),
            b_grid: grid,
            path: (0..30)
                .map(|i| (0.1 + 0.02 * i as f64, 0.9 - 0.02 * i as f64))
                .collect(),
            optimum: Some((0.7, 0.3)),
        };
        save(&chart, &path, Format::Svg).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let hex = format!(
            "#{:02X}{:02X}{:02X}",
            PATH_COLOR.0, PATH_COLOR.1, PATH_COLOR.2
        );
        let strokes: Vec<usize> = svg
            .lines()
            .filter(|l| l.contains("<polyline") && l.contains(&format!("stroke=\"{hex}\"")))
            .map(|l| {
                let points = l.split("points=\"").nth(1).unwrap();
                points.split('"').next().unwrap().split_whitespace().count()
            })
            .collect();
        assert!(strokes.contains(&30), "the path, 30 points: {strokes:?}");
        assert!(strokes.contains(&2), "the legend sample: {strokes:?}");
        // smooth bands are runs of pixels, not one box per grid cell, and still a small file
        assert!(
            svg.matches("<rect").count() > 20 * 20,
            "finer than the grid"
        );
        assert!(svg.len() < 2_000_000, "{} bytes", svg.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_svg_fit_has_one_marker_per_point_and_a_red_line() {
        let dir = std::env::temp_dir().join(format!("gradtape-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fit.svg");
        let chart = FitChart {
            x: vec![0.0, 0.5, 1.0],
            y: vec![0.3, 0.5, 0.8],
            history: vec![(0.0, 0.0)],
            fitted: (0.3, 0.5),
            reference: None,
            title: "t".into(),
        };
        save(&chart, &path, Format::Svg).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        // 3 data markers + 1 legend marker
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
        assert!(svg.contains("#FF0000"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
