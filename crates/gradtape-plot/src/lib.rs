//! Charts for gradtape's command line, drawn with plotters and a font bundled in the repo
//! (DejaVu Sans, registered with plotters' pure-Rust `ab_glyph` text renderer), so no system
//! font or C library is needed. Each chart is plain data in, a PNG, SVG or GIF file out: the
//! numbers are computed elsewhere.
//!
//! ```no_run
//! use gradtape_plot::{save, CostChart, Format};
//! let chart = CostChart { costs: vec![80.0, 40.0, 25.0, 20.0], saturation_epoch: Some(3) };
//! save(&chart, std::path::Path::new("cost.png"), Format::Png).unwrap();
//! ```
#![deny(missing_docs)]

use std::fmt;
use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
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
            let root = BitMapBackend::new(path, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            chart.draw(&root)?;
            root.present().map_err(err)
        }
        Format::Svg => {
            let root = SVGBackend::new(path, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            chart.draw(&root)?;
            root.present().map_err(err)
        }
    }
}

/// Writes an animated GIF, one frame per chart, `delay_ms` apart.
///
/// # Errors
/// When drawing or writing the file fails.
pub fn save_gif<C: Chart>(frames: &[C], path: &Path, delay_ms: u32) -> Result<(), PlotError> {
    init_font();
    let root = BitMapBackend::gif(path, SIZE, delay_ms)
        .map_err(err)?
        .into_drawing_area();
    for frame in frames {
        root.fill(&WHITE).map_err(err)?;
        frame.draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(())
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

/// The series legend every chart draws, in one style.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
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

/// The data as a scatter plot with the fitted line `y = a + b·x` (red, dashed, as in the seed)
/// and the lines of earlier epochs, faint.
pub struct FitChart {
    /// The independent variable.
    pub x: Vec<f64>,
    /// The dependent variable.
    pub y: Vec<f64>,
    /// `(a, b)` of earlier epochs, drawn faint (a few of them when there are many).
    pub history: Vec<(f64, f64)>,
    /// The fitted `(a, b)`.
    pub fitted: (f64, f64),
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
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("Independent")
            .y_desc("dependent")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        let step = (self.history.len() / 15).max(1);
        for &ab in self.history.iter().step_by(step) {
            chart
                .draw_series(LineSeries::new(line(ab), BLACK.mix(0.12).stroke_width(1)))
                .map_err(err)?;
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
            .label(format!("y = {a:.4} + {b:.4}·x"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FIT_RED.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// The cost per epoch, with the saturation epoch marked.
pub struct CostChart {
    /// Cost evaluated at the start of each epoch.
    pub costs: Vec<f64>,
    /// The first epoch whose cost is within 1% of the final cost.
    pub saturation_epoch: Option<usize>,
}

impl Chart for CostChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let n = self.costs.len().max(2);
        let (y0, y1) = padded(self.costs.iter().copied());
        let mut chart = ChartBuilder::on(root)
            .caption("Cost per epoch", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..(n - 1) as f64, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epochs")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("cost values")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                self.costs.iter().enumerate().map(|(e, &c)| (e as f64, c)),
                POINT_BLUE.stroke_width(2),
            ))
            .map_err(err)?
            .label("cost")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], POINT_BLUE.stroke_width(2)));
        if let Some(s) = self.saturation_epoch.filter(|&s| s < self.costs.len()) {
            let at = (s as f64, self.costs[s]);
            chart
                .draw_series(DashedLineSeries::new(
                    [(s as f64, y0), (s as f64, y1)],
                    6,
                    4,
                    FIT_RED.stroke_width(1),
                ))
                .map_err(err)?
                .label(format!("saturation: epoch {s}"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FIT_RED.stroke_width(1)));
            chart
                .draw_series([Circle::new(at, 5, FIT_RED.filled())])
                .map_err(err)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// `a` and `b` per epoch.
pub struct ParamsChart {
    /// `a` at the start of each epoch.
    pub a: Vec<f64>,
    /// `b` at the start of each epoch.
    pub b: Vec<f64>,
}

impl Chart for ParamsChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let n = self.a.len().max(2);
        let (y0, y1) = padded(self.a.iter().chain(&self.b).copied());
        let mut chart = ChartBuilder::on(root)
            .caption("Parameters per epoch", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..(n - 1) as f64, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epochs")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("value")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        let green = RGBColor(44, 160, 44);
        for (name, vals, color) in [("a", &self.a, POINT_BLUE), ("b", &self.b, green)] {
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
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// The loss over a grid of `(a, b)` as filled contour bands, with the descent path on top.
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

impl Chart for LandscapeChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        let (na, nb) = (self.a_grid.len(), self.b_grid.len());
        if na < 2 || nb < 2 {
            return Err(PlotError(
                "landscape: the grid needs at least 2 x 2 points".into(),
            ));
        }
        let (a0, a1) = (self.a_grid[0], self.a_grid[na - 1]);
        let (b0, b1) = (self.b_grid[0], self.b_grid[nb - 1]);
        let mut chart = ChartBuilder::on(root)
            .caption("Loss landscape and descent path", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(a0..a1, b0..b1)
            .map_err(err)?;
        // Contour bands of log(loss): 14 levels between the grid's smallest and largest loss.
        let logs: Vec<Vec<f64>> = self
            .loss
            .iter()
            .map(|r| r.iter().map(|v| v.max(1e-300).ln()).collect())
            .collect();
        let (lo, hi) = padded(logs.iter().flatten().copied());
        let levels = 14.0;
        let (da, db) = ((a1 - a0) / (na - 1) as f64, (b1 - b0) / (nb - 1) as f64);
        chart
            .draw_series(logs.iter().enumerate().flat_map(|(i, row)| {
                row.iter().enumerate().map(move |(j, &v)| {
                    let band = (((v - lo) / (hi - lo)) * levels).floor() / levels;
                    let (a, b) = (a0 + i as f64 * da, b0 + j as f64 * db);
                    Rectangle::new(
                        [(a - da / 2.0, b - db / 2.0), (a + da / 2.0, b + db / 2.0)],
                        ramp(band).filled(),
                    )
                })
            }))
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("a (intercept)")
            .y_desc("b (slope)")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                self.path.iter().copied(),
                WHITE.stroke_width(2),
            ))
            .map_err(err)?
            .label("descent path")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        chart
            .draw_series(self.path.iter().map(|&p| Circle::new(p, 2, WHITE.filled())))
            .map_err(err)?;
        if let Some(&last) = self.path.last() {
            chart
                .draw_series([Circle::new(last, 5, FIT_RED.filled())])
                .map_err(err)?;
        }
        if let Some(o) = self.optimum {
            chart
                .draw_series([Cross::new(o, 7, BLACK.stroke_width(2))])
                .map_err(err)?
                .label("least-squares minimum")
                .legend(|(x, y)| Cross::new((x + 10, y), 5, BLACK.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
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
}

fn curve_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    train: &[f64],
    val: Option<&Vec<f64>>,
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
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let orange = RGBColor(255, 127, 14);
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
                orange.stroke_width(2),
            ))
            .map_err(err)?
            .label("validation")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], orange.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

impl Chart for CurvesChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>
    where
        DB::ErrorType: 'static,
    {
        match &self.train_accuracy {
            Some(acc) => {
                let (left, right) = root.split_horizontally(SIZE.0 / 2);
                curve_panel(&left, "Loss", &self.train_loss, self.val_loss.as_ref())?;
                curve_panel(&right, "Accuracy", acc, self.val_accuracy.as_ref())
            }
            None => curve_panel(root, "Loss", &self.train_loss, self.val_loss.as_ref()),
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
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
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
            .x_labels(2 * k + 1)
            .y_labels(2 * k + 1)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .label_style(("sans-serif", 13))
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
                chart
                    .draw_series([Text::new(
                        c.to_string(),
                        (j as f64 + 0.4, y + 0.6),
                        ("sans-serif", 14).into_font().color(&color),
                    )])
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_svg_fit_has_one_marker_per_point_and_a_red_line() {
        let dir = std::env::temp_dir().join(format!("gradtape-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fit.svg");
        let chart = FitChart {
            x: vec![0.0, 0.5, 1.0],
            y: vec![0.3, 0.5, 0.8],
            history: vec![(0.0, 0.0)],
            fitted: (0.3, 0.5),
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
