//! PNG plots with plotters: loss and accuracy curves, the confusion matrix. Text needs a TrueType
//! font: the first of the usual system fonts found (or `$APP_FONT`); without one, plots carry no text.

use crate::history::EpochRecord;
use crate::metrics::Confusion;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers a font once; whether text can be drawn.
pub(crate) fn have_font() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let candidates = std::env::var("APP_FONT")
            .ok()
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()));
        for p in candidates {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("{}: drawing the plot failed: {e:?}", path.display())
}

/// Reads one value of an epoch's record.
type Metric = fn(&EpochRecord) -> f64;

/// Two panels: loss and accuracy per epoch, train and validation.
pub fn curves(path: &Path, h: &[EpochRecord]) -> Result<()> {
    if h.is_empty() {
        return Ok(());
    }
    let text = have_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (1000, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(err(path))?;
        let panels = root.split_evenly((1, 2));
        let n = h.len() as f64;
        let series: [(&str, Metric, Metric); 2] = [
            ("loss", |r| r.loss, |r| r.val_loss),
            ("accuracy", |r| r.accuracy, |r| r.val_accuracy),
        ];
        for (area, (name, train, val)) in panels.iter().zip(series.iter()) {
            // Headroom above the curves for the legend (drawn in the upper right).
            let ymax = h
                .iter()
                .flat_map(|r| [train(r), val(r)])
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max)
                .max(1e-3)
                * 1.35;
            let mut b = ChartBuilder::on(area);
            b.margin(15)
                .x_label_area_size(if text { 30 } else { 0 })
                .y_label_area_size(if text { 45 } else { 0 });
            if text {
                b.caption(*name, ("sans-serif", 20));
            }
            // Half an epoch of margin on each side, so a single epoch is a visible point.
            let mut chart = b
                .build_cartesian_2d(0.5..n + 0.5, 0.0..ymax)
                .map_err(err(path))?;
            let mut mesh = chart.configure_mesh();
            // Epoch ticks at whole numbers only.
            mesh.x_labels(h.len().min(20)).x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            });
            if !text {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.x_desc(if text { "epoch" } else { "" })
                .draw()
                .map_err(err(path))?;
            let pts = |f: Metric| h.iter().map(|r| (r.epoch as f64, f(r))).collect::<Vec<_>>();
            for (f, color, label) in [(train, BLUE, "train"), (val, RED, "validation")] {
                chart
                    .draw_series(
                        pts(*f)
                            .into_iter()
                            .map(|p| Circle::new(p, 5, color.filled())),
                    )
                    .map_err(err(path))?;
                let s = chart
                    .draw_series(LineSeries::new(pts(*f), color.stroke_width(2)))
                    .map_err(err(path))?;
                if text {
                    s.label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                }
            }
            if text {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(err(path))?;
            }
        }
        root.present().map_err(err(path))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The confusion matrix as a heat map with counts.
pub fn confusion(path: &Path, c: &Confusion) -> Result<()> {
    let text = have_font();
    let k = c.classes.len();
    let cell = 40u32;
    let margin = if text { 140 } else { 10 };
    let size = (margin + cell * k as u32 + 10, margin + cell * k as u32 + 10);
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(err(path))?;
        let max = c.matrix.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        for (i, row) in c.matrix.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let x0 = (margin + j as u32 * cell) as i32;
                let y0 = (margin + i as u32 * cell) as i32;
                let shade = 1.0 - v as f64 / max;
                let color = RGBColor((255.0 * shade) as u8, (255.0 * shade) as u8, 255);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    color.filled(),
                ))
                .map_err(err(path))?;
                if text && v > 0 {
                    let fg = if shade < 0.5 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        v.to_string(),
                        (x0 + 12, y0 + 12),
                        ("sans-serif", 15).into_font().color(&fg),
                    ))
                    .map_err(err(path))?;
                }
            }
            if text {
                let y = (margin + i as u32 * cell + 12) as i32;
                root.draw(&Text::new(c.classes[i].clone(), (5, y), ("sans-serif", 14)))
                    .map_err(err(path))?;
                // Column i: the predicted class's name, written upwards above its column.
                let x = (margin + i as u32 * cell + 12) as i32;
                root.draw(&Text::new(
                    c.classes[i].clone(),
                    (x, margin as i32 - 6),
                    ("sans-serif", 14)
                        .into_font()
                        .transform(FontTransform::Rotate270),
                ))
                .map_err(err(path))?;
            }
        }
        if text {
            root.draw(&Text::new(
                "rows: true class, columns: predicted class",
                (5, 5),
                ("sans-serif", 14),
            ))
            .map_err(err(path))?;
        }
        root.present().map_err(err(path))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The learning-rate range test: smoothed loss against the rate (log scale), the suggestion marked.
pub fn lr_find(path: &Path, points: &[(f64, f64)], suggestion: Option<f64>) -> Result<()> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(lr, l)| lr.is_finite() && *lr > 0.0 && l.is_finite())
        .collect();
    if finite.len() < 2 {
        return Ok(());
    }
    let text = have_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (800, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(err(path))?;
        let (x0, x1) = (finite[0].0, finite[finite.len() - 1].0);
        let lo = finite.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = finite.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let mut b = ChartBuilder::on(&root);
        b.margin(15)
            .x_label_area_size(if text { 35 } else { 0 })
            .y_label_area_size(if text { 50 } else { 0 });
        if text {
            b.caption("learning-rate finder (smoothed loss)", ("sans-serif", 20));
        }
        let mut chart = b
            .build_cartesian_2d((x0..x1).log_scale(), (lo - pad)..(hi + pad))
            .map_err(err(path))?;
        let mut mesh = chart.configure_mesh();
        mesh.x_label_formatter(&|x| format!("{x:.0e}"));
        if !text {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.x_desc(if text { "learning rate" } else { "" })
            .y_desc(if text { "loss" } else { "" })
            .draw()
            .map_err(err(path))?;
        chart
            .draw_series(LineSeries::new(finite.clone(), BLUE.stroke_width(2)))
            .map_err(err(path))?;
        if let Some(s) = suggestion {
            let y = finite
                .iter()
                .min_by(|a, b| {
                    (a.0.ln() - s.ln())
                        .abs()
                        .total_cmp(&(b.0.ln() - s.ln()).abs())
                })
                .map_or(lo, |p| p.1);
            chart
                .draw_series([Circle::new((s, y), 7, RED.filled())])
                .map_err(err(path))?;
        }
        root.present().map_err(err(path))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}
