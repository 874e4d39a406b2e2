//! Scoring a classifier on a split, and the `eval` command.

use crate::cli::EvalArgs;
use crate::config::RunConfig;
use crate::metrics::Confusion;
use anyhow::{Context, Result};
use data::{Dataset, LoaderConfig};
use mobilenet::Classifier;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct Misclassified {
    pub file: String,
    pub truth: String,
    pub predicted: String,
    pub probability: f32,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalResult {
    /// The checkpoint file that was scored.
    pub checkpoint: String,
    pub split: String,
    pub loss: f64,
    pub accuracy: f64,
    pub correct: usize,
    pub total: usize,
    pub confusion: Confusion,
    pub per_class: Vec<crate::metrics::ClassMetrics>,
    pub misclassified: Vec<Misclassified>,
}

/// Inference over the whole dataset, in order, without augmentation. `checkpoint` names the
/// weights being scored in the result.
pub fn evaluate(
    clf: &mut Classifier,
    ds: &Dataset,
    split: &str,
    checkpoint: &Path,
) -> Result<EvalResult> {
    let mut pred = Vec::with_capacity(ds.len());
    let mut prob = Vec::with_capacity(ds.len());
    let mut loss = 0.0f64;
    let order: Vec<usize> = (0..ds.len()).collect();
    for chunk in order.chunks(ds.cfg.batch_size) {
        let b = ds.batch(chunk, 0, false);
        let p = clf.predict(&b.x.into_shared())?;
        for (row, &label) in p.rows().into_iter().zip(&b.labels) {
            let (arg, best) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
            pred.push(arg);
            prob.push(best);
            loss -= (row[label].clamp(1e-7, 1.0) as f64).ln();
        }
    }
    let confusion = Confusion::new(&ds.classes, &ds.labels, &pred);
    let misclassified = (0..ds.len())
        .filter(|&i| pred[i] != ds.labels[i])
        .map(|i| Misclassified {
            file: ds.paths[i].display().to_string(),
            truth: ds.classes[ds.labels[i]].clone(),
            predicted: ds.classes[pred[i]].clone(),
            probability: prob[i],
        })
        .collect();
    let (correct, total) = (confusion.correct(), confusion.total());
    Ok(EvalResult {
        checkpoint: checkpoint.display().to_string(),
        split: split.into(),
        loss: loss / total.max(1) as f64,
        accuracy: correct as f64 / total.max(1) as f64,
        correct,
        total,
        per_class: confusion.per_class(),
        confusion,
        misclassified,
    })
}

/// Loads one split of the run's data with the run's preprocessing.
pub fn load_split(cfg: &RunConfig, data: &Path, split: &str, strict: bool) -> Result<Dataset> {
    let lc = LoaderConfig {
        height: cfg.height,
        width: cfg.width,
        interpolation: cfg.interpolation(),
        preprocess: cfg.preprocess(),
        batch_size: cfg.batch_size,
        strict,
        ..Default::default()
    };
    let dir = data.join(split);
    let ds = Dataset::load(&dir, Some(&cfg.classes), lc)
        .with_context(|| format!("loading the {split} split"))?;
    for s in &ds.skipped {
        eprintln!("warning: {}: {} (skipped)", s.path.display(), s.reason);
    }
    Ok(ds)
}

/// The result as text; at most `show_misclassified` misclassified files are listed.
pub fn print(r: &EvalResult, show_misclassified: usize) {
    crate::outln!("Checkpoint: {}", r.checkpoint);
    crate::outln!(
        "{} loss: {:.4} - accuracy: {:.4}",
        r.split,
        r.loss,
        r.accuracy
    );
    crate::outln!("Correct predictions: {} out of {}", r.correct, r.total);
    crate::outln!(
        "\n{:>16} {:>9} {:>9} {:>9} {:>8}",
        "class",
        "precision",
        "recall",
        "f1",
        "support"
    );
    for m in &r.per_class {
        crate::outln!(
            "{:>16} {:>9.3} {:>9.3} {:>9.3} {:>8}",
            m.class,
            m.precision,
            m.recall,
            m.f1,
            m.support
        );
    }
    crate::outln!(
        "\nConfusion matrix (rows: true, columns: predicted)\n{}",
        r.confusion.to_text()
    );
    if !r.misclassified.is_empty() && show_misclassified > 0 {
        crate::outln!("Misclassified:");
        for m in r.misclassified.iter().take(show_misclassified) {
            crate::outln!(
                "  {}: {} taken for {} ({:.3})",
                m.file,
                m.truth,
                m.predicted,
                m.probability
            );
        }
        let more = r.misclassified.len().saturating_sub(show_misclassified);
        if more > 0 {
            crate::outln!("  ... and {more} more (--show-misclassified N lists more)");
        }
    }
}

pub fn run(args: EvalArgs) -> Result<i32> {
    let (cfg, mut clf) = crate::load::from_run(&args.checkpoint, args.best)?;
    let data = args.data.clone().unwrap_or_else(|| cfg.data.clone());
    crate::load::require(&data, crate::config::DEFAULT_DATA, "data folder")?;
    let ds = load_split(&cfg, &data, &args.split, false)?;
    let file = args.checkpoint.join(checkpoint_name(args.best));
    let r = evaluate(&mut clf, &ds, &args.split, &file)?;
    // The run's own confusion_test.png belongs to the final model in report.html: best.npz's
    // matrix gets a name of its own.
    let png = args.checkpoint.join(format!(
        "confusion_{}{}.png",
        args.split,
        if args.best { "_best" } else { "" }
    ));
    crate::plots::confusion(&png, &r.confusion)?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print(&r, args.show_misclassified);
        crate::outln!("Confusion matrix image: {}", png.display());
    }
    Ok(0)
}

/// The checkpoint file of a run that `--best` picks.
pub fn checkpoint_name(best: bool) -> &'static str {
    if best {
        "best.npz"
    } else {
        "last.npz"
    }
}
