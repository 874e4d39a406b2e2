//! Scoring a classifier on a split, and the `eval` command.

use crate::cli::EvalArgs;
use crate::config::RunConfig;
use crate::metrics::Confusion;
use anyhow::{Context, Result};
use data::{Dataset, LoaderConfig};
use mobilenet::Classifier;
use ndarray::{s, Array2};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct Misclassified {
    pub file: String,
    pub truth: String,
    pub predicted: String,
    pub probability: f32,
}

/// One image's loss, with its true and predicted classes' probabilities.
#[derive(Clone, Debug, Serialize)]
pub struct ImageLoss {
    pub file: String,
    pub truth: String,
    pub p_truth: f32,
    pub predicted: String,
    pub p_predicted: f32,
    /// Cross-entropy, -ln p_truth.
    pub loss: f64,
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
    /// Off-diagonal confusion cells, most frequent first.
    pub most_confused: Vec<crate::metrics::ConfusedPair>,
    /// The images with the highest loss, highest first (at most the number asked for).
    pub top_losses: Vec<ImageLoss>,
    /// With `--tta`: the same split scored on the mean of each image and its mirror.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<TtaScore>,
}

/// The scores of test-time augmentation (image + horizontal flip).
#[derive(Clone, Debug, Serialize)]
pub struct TtaScore {
    pub accuracy: f64,
    pub correct: usize,
    pub loss: f64,
}

/// How many of the highest-loss images an evaluation keeps by default.
pub const TOP_LOSSES: usize = 12;

/// Inference over the whole dataset, in order, without augmentation. `checkpoint` names the
/// weights being scored in the result; the `keep_losses` highest-loss images are listed.
pub fn evaluate(
    clf: &mut Classifier,
    ds: &Dataset,
    split: &str,
    checkpoint: &Path,
    keep_losses: usize,
) -> Result<EvalResult> {
    let (plain, _) = probabilities(clf, ds, false)?;
    Ok(result(&plain, ds, split, checkpoint, keep_losses))
}

/// The probabilities of every image of `ds`, in order, and with `tta` also the test-time
/// augmented ones (fastai's and timm's flip TTA: the mean of the image's and its horizontal
/// mirror's probabilities).
pub fn probabilities(
    clf: &mut Classifier,
    ds: &Dataset,
    tta: bool,
) -> Result<(Array2<f32>, Option<Array2<f32>>)> {
    let k = ds.classes.len();
    let mut plain = Array2::<f32>::zeros((ds.len(), k));
    let mut flipped = tta.then(|| Array2::<f32>::zeros((ds.len(), k)));
    let order: Vec<usize> = (0..ds.len()).collect();
    for chunk in order.chunks(ds.cfg.batch_size) {
        let b = ds.batch(chunk, 0, false);
        let rows = chunk[0]..chunk[0] + chunk.len();
        if let Some(f) = flipped.as_mut() {
            let mirror =
                b.x.slice(s![.., .., ..;-1, ..])
                    .to_owned()
                    .into_dyn()
                    .into_shared();
            let p = clf.predict(&mirror)?;
            f.slice_mut(s![rows.clone(), ..]).assign(&p);
        }
        let p = clf.predict(&b.x.into_shared())?;
        plain.slice_mut(s![rows, ..]).assign(&p);
    }
    let tta = flipped.map(|f| (&plain + &f) * 0.5);
    Ok((plain, tta))
}

/// Accuracy, loss, per-class metrics, confusions and top losses from each image's probabilities.
pub fn result(
    probs: &Array2<f32>,
    ds: &Dataset,
    split: &str,
    checkpoint: &Path,
    keep_losses: usize,
) -> EvalResult {
    let mut pred = Vec::with_capacity(ds.len());
    let mut prob = Vec::with_capacity(ds.len());
    let mut p_truth = Vec::with_capacity(ds.len());
    let mut loss = 0.0f64;
    for (row, &label) in probs.rows().into_iter().zip(&ds.labels) {
        let (arg, best) =
            row.iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        pred.push(arg);
        prob.push(best);
        p_truth.push(row[label]);
        loss -= (row[label].clamp(1e-7, 1.0) as f64).ln();
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
    let mut top_losses: Vec<ImageLoss> = (0..ds.len())
        .map(|i| ImageLoss {
            file: ds.paths[i].display().to_string(),
            truth: ds.classes[ds.labels[i]].clone(),
            p_truth: p_truth[i],
            predicted: ds.classes[pred[i]].clone(),
            p_predicted: prob[i],
            loss: -(p_truth[i].clamp(1e-7, 1.0) as f64).ln(),
        })
        .collect();
    top_losses.sort_by(|a, b| b.loss.total_cmp(&a.loss));
    top_losses.truncate(keep_losses);
    let (correct, total) = (confusion.correct(), confusion.total());
    EvalResult {
        checkpoint: checkpoint.display().to_string(),
        split: split.into(),
        loss: loss / total.max(1) as f64,
        accuracy: correct as f64 / total.max(1) as f64,
        correct,
        total,
        per_class: confusion.per_class(),
        most_confused: confusion.most_confused(1),
        confusion,
        misclassified,
        top_losses,
        tta: None,
    }
}

/// Loads one split of the run's data with the run's preprocessing.
pub fn load_split(cfg: &RunConfig, data: &Path, split: &str, strict: bool) -> Result<Dataset> {
    if split == "valid" && cfg.validation_split.is_some() {
        // The run's validation images came from its training images: the same split again.
        let mut train = Dataset::from_folder(
            listing(cfg, data, "train", Some(&cfg.classes))?,
            eval_loader(cfg, strict),
        )
        .context("loading the train split")?;
        if let Some(n) = cfg.limit_per_class {
            train.truncate_per_class(n);
        }
        return split_validation(&mut train, cfg, strict);
    }
    let ds = Dataset::from_folder(
        listing(cfg, data, split, Some(&cfg.classes))?,
        eval_loader(cfg, strict),
    )
    .with_context(|| format!("loading the {split} split"))?;
    for s in &ds.skipped {
        eprintln!("warning: {}: {} (skipped)", s.path.display(), s.reason);
    }
    Ok(ds)
}

/// The images of a split as the run lists them: `<data>/<split>/<class>/` or, with `--labels-csv`,
/// that split's rows; with `classes`, the split must have exactly those.
pub fn listing(
    cfg: &RunConfig,
    data: &Path,
    split: &str,
    classes: Option<&[String]>,
) -> Result<data::ImageFolder> {
    let Some(csv) = &cfg.labels_csv else {
        return data::ImageFolder::open(&data.join(split), classes)
            .with_context(|| format!("loading the {split} split"));
    };
    let l = data::labels_csv::read(csv)?;
    if let Some(want) = classes.filter(|c| l.classes != *c) {
        anyhow::bail!(
            "{}: its training labels are {:?} but the run's classes are {:?}",
            csv.display(),
            l.classes,
            want
        );
    }
    let folder = match split {
        "train" => Some(l.train),
        "valid" => l.valid,
        "test" => l.test,
        _ => None,
    };
    folder.with_context(|| {
        format!(
            "{}: no {split} rows (give the rows a split column{})",
            csv.display(),
            if split == "valid" {
                ", or pass --validation-split"
            } else {
                ""
            }
        )
    })
}

/// Whether the run's data has this split (a folder, or rows of the CSV).
pub fn has_split(cfg: &RunConfig, data: &Path, split: &str) -> bool {
    match &cfg.labels_csv {
        None => data.join(split).is_dir(),
        Some(_) => listing(cfg, data, split, None).is_ok(),
    }
}

/// How a run's images are loaded for scoring: its size and preprocessing, in order, unaugmented.
pub fn eval_loader(cfg: &RunConfig, strict: bool) -> LoaderConfig {
    LoaderConfig {
        height: cfg.height,
        width: cfg.width,
        interpolation: cfg.interpolation(),
        preprocess: cfg.preprocess(),
        batch_size: cfg.batch_size,
        strict,
        ..Default::default()
    }
}

/// `--validation-split`: the validation images taken out of `train` (Keras's semantics, by the
/// run's seed), loaded for scoring.
pub fn split_validation(train: &mut Dataset, cfg: &RunConfig, strict: bool) -> Result<Dataset> {
    let fraction = cfg.validation_split.unwrap_or_default();
    train
        .split_off_validation(fraction, cfg.seed, eval_loader(cfg, strict))
        .with_context(|| format!("--validation-split {fraction}"))
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
    if let Some(t) = &r.tta {
        crate::outln!(
            "With TTA (mean of the image and its horizontal flip): loss: {:.4} - accuracy: {:.4} ({} out of {}); without: {:.4}",
            t.loss,
            t.accuracy,
            t.correct,
            r.total,
            r.accuracy
        );
    }
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
    if !r.most_confused.is_empty() {
        crate::outln!("Most confused (true -> predicted: count):");
        for p in r.most_confused.iter().take(10) {
            crate::outln!("  {} -> {}: {}", p.truth, p.predicted, p.count);
        }
    }
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
    if cfg.labels_csv.is_none() {
        crate::load::require(&data, crate::config::DEFAULT_DATA, "data folder")?;
    }
    let ds = load_split(&cfg, &data, &args.split, false)?;
    let file = args.checkpoint.join(checkpoint_name(args.best));
    let keep = args.gallery.max(TOP_LOSSES);
    let (plain, tta) = probabilities(&mut clf, &ds, args.tta)?;
    let mut r = result(&plain, &ds, &args.split, &file, keep);
    if let Some(p) = tta {
        let t = result(&p, &ds, &args.split, &file, 0);
        r.tta = Some(TtaScore {
            accuracy: t.accuracy,
            correct: t.correct,
            loss: t.loss,
        });
    }
    // The run's own confusion_test.png belongs to the final model in report.html: best.npz's
    // matrix gets a name of its own.
    let png = args.checkpoint.join(format!(
        "confusion_{}{}.png",
        args.split,
        if args.best { "_best" } else { "" }
    ));
    crate::plots::confusion(&png, &r.confusion)?;
    let gallery = if args.gallery > 0 {
        let dir = args.checkpoint.join(format!(
            "top_losses_{}{}",
            args.split,
            if args.best { "_best" } else { "" }
        ));
        let mut ex = crate::explain::Explainer::for_run(clf, &cfg)?;
        let n = args.gallery.min(r.top_losses.len());
        Some((
            crate::gallery::write(&mut ex, &r.top_losses[..n], &dir)?,
            dir,
        ))
    } else {
        None
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print(&r, args.show_misclassified);
        crate::outln!("Confusion matrix image: {}", png.display());
        if let Some((files, dir)) = &gallery {
            crate::outln!(
                "Top losses gallery: {} ({} images, Grad-CAM of the predicted class)",
                dir.display(),
                files.len()
            );
        }
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
