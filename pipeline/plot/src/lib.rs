//! PNG charts for loss curves and the run report.
//!
//! plotters draws text through `ab_glyph`, which needs a font in memory; DejaVu Sans
//! (Bitstream Vera licence, see `assets/DejaVu-LICENSE`) is embedded so that charts render the
//! same on every machine without relying on the system's fonts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot draw chart: {message}")]
    Draw { path: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).unwrap_or_else(|_| panic!("embedded DejaVuSans.ttf is a valid font"));
    });
}

/// One named line of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const WIDTH: u32 = 800;
const HEIGHT: u32 = 480;
const COLORS: [RGBColor; 6] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];

fn draw_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Draw { path: path.display().to_string(), message: e.to_string() }
}

/// Range covering `values` with a 5% margin (a flat range is widened so it has a height).
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-9).max(if hi == lo { hi.abs() * 0.1 + 1e-3 } else { 0.0 });
    (lo - pad)..(hi + pad)
}

/// Draws `series` as lines with a legend, into a PNG at `path`.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
    let xs = padded_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let ys = padded_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xs, ys)
        .map_err(|e| draw_err(path, e))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| draw_err(path, e))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| draw_err(path, e))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    if !series.is_empty() {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| draw_err(path, e))?;
    }
    root.present().map_err(|e| draw_err(path, e))
}

/// Draws a histogram of `values` with `bins` equal-width bins into a PNG at `path`.
pub fn histogram(path: &Path, title: &str, x_label: &str, values: &[f64], bins: usize) -> Result<()> {
    register_font();
    let bins = bins.max(1);
    let range = padded_range(values.iter().copied());
    let width = (range.end - range.start) / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in values.iter().filter(|v| v.is_finite()) {
        let b = (((v - range.start) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(range.clone(), 0.0..top)
        .map_err(|e| draw_err(path, e))?;
    chart.configure_mesh().x_desc(x_label).y_desc("count").draw().map_err(|e| draw_err(path, e))?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = range.start + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], COLORS[0].mix(0.8).filled())
        }))
        .map_err(|e| draw_err(path, e))?;
    root.present().map_err(|e| draw_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels of exactly this colour in the PNG.
    fn pixels_of(path: &Path, color: RGBColor) -> usize {
        let img = image::open(path).unwrap().to_rgb8();
        img.pixels().filter(|p| p.0 == [color.0, color.1, color.2]).count()
    }

    #[test]
    fn charts_are_written_and_show_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let line = dir.path().join("loss.png");
        let series = vec![
            Series { name: "train".into(), points: (0..50).map(|i| (i as f64, 5.0 / (1.0 + i as f64))).collect() },
            Series { name: "validation".into(), points: (0..50).step_by(10).map(|i| (i as f64, 5.5 / (1.0 + i as f64))).collect() },
        ];
        line_chart(&line, "loss", "step", "nats/token", &series).unwrap();
        assert!(pixels_of(&line, COLORS[0]) > 500, "the first series is drawn");
        assert!(pixels_of(&line, COLORS[1]) > 300, "the second series is drawn");
        assert!(pixels_of(&line, BLACK) > 200, "axes and text are drawn");

        let hist = dir.path().join("hist.png");
        histogram(&hist, "completion length", "tokens", &(0..500).map(|i| (i % 97) as f64).collect::<Vec<_>>(), 20).unwrap();
        let bars = image::open(&hist).unwrap().to_rgb8().pixels().filter(|p| p.0[2] > 150 && p.0[0] < 150).count();
        assert!(bars > 10_000, "bars cover a good part of the plot: {bars}");
    }
}
