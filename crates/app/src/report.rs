//! One self-contained HTML report per run: configuration, curves, test metrics, confusion matrix and
//! the most confused pairs, the top-losses gallery with Grad-CAM, thumbnails of the misclassified test
//! images; every image embedded.

use crate::config::RunConfig;
use crate::evaluate::EvalResult;
use crate::history::EpochRecord;
use anyhow::Result;
use base64::Engine;
use std::fmt::Write as _;
use std::path::Path;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn embed_png(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!(
        "<img src=\"data:image/png;base64,{}\">",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn thumbnail(path: &str) -> Option<String> {
    let img = data::decode_rgb(Path::new(path), data::DecodeLimits::default()).ok()?;
    let small = image::imageops::thumbnail(&img, 112, 112);
    let mut buf = std::io::Cursor::new(Vec::new());
    small.write_to(&mut buf, image::ImageFormat::Png).ok()?;
    Some(format!(
        "<img src=\"data:image/png;base64,{}\">",
        base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
    ))
}

/// The top-losses gallery written beside the report: each image (photo | Grad-CAM of the predicted
/// class, captioned), highest loss first, and a table of the same images.
fn top_losses(gallery: &Path, t: &EvalResult) -> String {
    let mut files: Vec<_> = std::fs::read_dir(gallery)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "png"));
    files.sort();
    if files.is_empty() {
        return String::new();
    }
    let mut h = String::from(
        "<h3>Top losses (Grad-CAM of the predicted class: where the model looked)</h3>",
    );
    for f in &files {
        if let Some(img) = embed_png(f) {
            let _ = write!(h, "<figure>{img}</figure>");
        }
    }
    h += "<table><tr><th>#</th><th>file</th><th>true</th><th>p(true)</th><th>predicted</th><th>p(predicted)</th><th>loss</th></tr>";
    for (i, l) in t.top_losses.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            i + 1,
            esc(&l.file),
            esc(&l.truth),
            l.p_truth,
            esc(&l.predicted),
            l.p_predicted,
            l.loss
        );
    }
    h + "</table>"
}

pub fn write(
    dir: &Path,
    cfg: &RunConfig,
    history: &[EpochRecord],
    test: Option<&EvalResult>,
) -> Result<()> {
    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>Training report</title>\
        <style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}figure{display:inline-block;margin:6px;font-size:12px}</style></head><body>");
    let _ = write!(
        h,
        "<h1>Training report</h1><h2>Configuration</h2><pre>{}</pre>",
        esc(&serde_json::to_string_pretty(cfg)?)
    );
    h += "<h2>History</h2><table><tr><th>epoch</th><th>s</th><th>loss</th><th>accuracy</th><th>val_loss</th><th>val_accuracy</th></tr>";
    for r in history {
        let _ = write!(h, "<tr><td>{}</td><td>{:.1}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td></tr>", r.epoch, r.seconds, r.loss, r.accuracy, r.val_loss, r.val_accuracy);
    }
    h += "</table>";
    if let Some(img) = embed_png(&dir.join("history.png")) {
        h += &img;
    }
    if let Some(t) = test {
        let _ = write!(h, "<h2>Test split</h2><p>loss {:.4}, accuracy {:.4}: <b>Correct predictions: {} out of {}</b></p>", t.loss, t.accuracy, t.correct, t.total);
        h += "<table><tr><th>class</th><th>precision</th><th>recall</th><th>f1</th><th>support</th></tr>";
        for m in &t.per_class {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
                esc(&m.class),
                m.precision,
                m.recall,
                m.f1,
                m.support
            );
        }
        h += "</table><h3>Confusion matrix</h3>";
        let _ = write!(h, "<pre>{}</pre>", esc(&t.confusion.to_text()));
        if let Some(img) = embed_png(&dir.join("confusion_test.png")) {
            h += &img;
        }
        if !t.most_confused.is_empty() {
            h += "<h3>Most confused pairs</h3><table><tr><th>true</th><th>predicted</th><th>images</th></tr>";
            for p in &t.most_confused {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&p.truth),
                    esc(&p.predicted),
                    p.count
                );
            }
            h += "</table>";
        }
        h += &top_losses(&dir.join("top_losses_test"), t);
        h += "<h3>Misclassified test images</h3>";
        for m in &t.misclassified {
            let _ = write!(
                h,
                "<figure>{}<figcaption>{}<br>{} taken for {} ({:.2})</figcaption></figure>",
                thumbnail(&m.file).unwrap_or_default(),
                esc(&m.file),
                esc(&m.truth),
                esc(&m.predicted),
                m.probability
            );
        }
    }
    h += "</body></html>";
    let path = dir.join("report.html");
    nn::checkpoint::write_bytes_atomic(&path, h.as_bytes())?;
    Ok(())
}
