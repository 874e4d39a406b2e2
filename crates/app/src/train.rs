//! `train`: the fit loop. Keras-style progress and epoch lines, history, plots, best and last
//! checkpoints, Ctrl-C that saves and says how to resume, bit-identical `--resume`, a stop on a
//! non-finite loss, the frozen-feature cache, and the test split scored at the end.

use crate::cli::TrainArgs;
use crate::config::{RunConfig, DEFAULT_DATA};
use crate::evaluate::{evaluate, load_split, print, EvalResult};
use crate::history::{self, EpochRecord};
use anyhow::{bail, Context, Result};
use data::{Dataset, LoaderConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mobilenet::classifier::Frozen;
use mobilenet::Classifier;
use ndarray::Axis;
use nn::optim::{Adam, AdamParams, Optimizer, Sgd, SgdParams};
use nn::{NodeId, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Where the loop stands, saved beside `last.npz` so `--resume` continues exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct TrainerState {
    /// Epoch in progress (0-based) and the next batch to run in it.
    epoch: usize,
    next_batch: usize,
    loss_sum: f64,
    correct: u64,
    seen: u64,
    seconds: f64,
    /// Lowest validation loss so far (Keras's `ModelCheckpoint` default monitor).
    best_val_loss: Option<f64>,
    iterations: u64,
    history: Vec<EpochRecord>,
}

impl TrainerState {
    fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        let path = dir.join("trainer.json");
        nn::checkpoint::write_bytes_atomic(&path, text.as_bytes())?;
        Ok(())
    }

    fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("trainer.json");
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("{}: no trainer state to resume from", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable trainer state", p.display()))
    }
}

/// Frozen-part outputs of every image of a split, row `i` for image `i`.
struct FeatureCache {
    nodes: Vec<NodeId>,
    data: Vec<Tensor>,
}

/// Ctrl-C arrived before the first training step: nothing was trained, nothing needs saving.
#[derive(Debug, thiserror::Error)]
#[error("interrupted before training started")]
struct InterruptedBeforeTraining;

impl FeatureCache {
    fn build(
        clf: &mut Classifier,
        ds: &Dataset,
        what: &str,
        quiet: bool,
        interrupted: &AtomicBool,
    ) -> Result<Self> {
        let bar = bar(ds.num_batches() as u64, quiet);
        bar.set_message(format!("caching {what} features"));
        let mut parts: HashMap<NodeId, Vec<Tensor>> = HashMap::new();
        let order: Vec<usize> = (0..ds.len()).collect();
        for chunk in order.chunks(ds.cfg.batch_size) {
            if interrupted.load(Ordering::SeqCst) {
                bar.abandon();
                return Err(InterruptedBeforeTraining.into());
            }
            let b = ds.batch(chunk, 0, false);
            for (k, v) in clf.frozen(&b.x.into_shared())? {
                parts.entry(k).or_default().push(v);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let mut nodes: Vec<NodeId> = parts.keys().copied().collect();
        nodes.sort();
        let data = nodes
            .iter()
            .map(|n| {
                let views: Vec<_> = parts[n].iter().map(|t| t.view()).collect();
                ndarray::concatenate(Axis(0), &views)
                    .map(|a| a.into_shared())
                    .context("stacking cached features")
            })
            .collect::<Result<_>>()?;
        Ok(FeatureCache { nodes, data })
    }

    fn get(&self, idx: &[usize]) -> Frozen {
        self.nodes
            .iter()
            .zip(&self.data)
            .map(|(n, t)| (*n, t.select(Axis(0), idx).into_shared()))
            .collect()
    }

    fn bytes(&self) -> usize {
        self.data.iter().map(|t| t.len() * 4).sum()
    }
}

fn bar(len: u64, quiet: bool) -> ProgressBar {
    let b = ProgressBar::new(len);
    if quiet {
        b.set_draw_target(ProgressDrawTarget::hidden());
    }
    b.set_style(
        ProgressStyle::with_template("{pos:>3}/{len} [{bar:30}] {elapsed_precise} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b
}

fn optimizer(cfg: &RunConfig) -> Result<Box<dyn Optimizer>> {
    Ok(match cfg.optimizer.as_str() {
        "adam" => Box::new(Adam::new(AdamParams {
            lr: cfg.lr,
            ..Default::default()
        })),
        "sgd" => Box::new(Sgd::new(SgdParams {
            lr: cfg.lr,
            momentum: 0.9,
        })),
        other => bail!("unknown optimizer {other:?}"),
    })
}

fn save_checkpoint(path: &Path, clf: &mut Classifier, opt: &dyn Optimizer) -> Result<()> {
    let mut t = nn::checkpoint::graph_tensors(&mut clf.net.graph);
    t.extend(opt.state());
    nn::checkpoint::save_npz(path, &t)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

/// The run folder of a new run, created here: `--out` (refused when it already holds files,
/// unless `--overwrite`), or `runs/<timestamp>` with `-2`, `-3`, ... added until the name is new.
fn new_run_dir(args: &TrainArgs) -> Result<PathBuf> {
    if let Some(out) = &args.out {
        if !args.overwrite {
            refuse_a_used_out(args)?;
        }
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating run folder {}", out.display()))?;
        return Ok(out.clone());
    }
    let root = PathBuf::from("runs");
    std::fs::create_dir_all(&root).context("creating runs/")?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    claim_new_folder(&root, &stamp)
}

/// Creates `root/stamp`, or `root/stamp-2`, `-3`, ... : the first name that does not exist yet.
fn claim_new_folder(root: &Path, stamp: &str) -> Result<PathBuf> {
    for n in 1.. {
        let dir = match n {
            1 => root.join(stamp),
            _ => root.join(format!("{stamp}-{n}")),
        };
        // create_dir fails when the folder exists: two runs never get the same one.
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!("some suffix is free")
}

/// `--data` must hold `train/`; a split folder given instead gets its parent suggested.
fn check_data_folder(data: &Path) -> Result<()> {
    crate::load::require(data, DEFAULT_DATA, "data folder")?;
    if data.join("train").is_dir() {
        return Ok(());
    }
    let name = data.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = data.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) =
        parent.filter(|p| matches!(name, "train" | "valid" | "test") && p.join("train").is_dir())
    {
        bail!(
            "{}: a split folder, not the data folder; pass its parent: --data {}",
            data.display(),
            parent.display()
        );
    }
    bail!(
        "{}: no train/ folder; the data folder holds train/<class>/*.jpg and valid/<class>/*.jpg (and optionally test/)",
        data.display()
    )
}

/// The command that continues this run, as the user invoked this binary, with an absolute path.
fn resume_command(dir: &Path) -> String {
    let exe = std::env::args().next().unwrap_or_else(|| "app".into());
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("{exe} train --resume {}", abs.display())
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Validation (or test) loss and accuracy from cached features.
fn score_cached(clf: &mut Classifier, cache: &FeatureCache, ds: &Dataset) -> Result<(f64, f64)> {
    let mut loss = 0.0;
    let mut correct = 0usize;
    let order: Vec<usize> = (0..ds.len()).collect();
    for chunk in order.chunks(ds.cfg.batch_size) {
        let p = clf.predict_frozen(&cache.get(chunk))?;
        for (row, &i) in p.rows().into_iter().zip(chunk) {
            let l = ds.labels[i];
            loss -= (row[l].clamp(1e-7, 1.0) as f64).ln();
            correct += (nn::loss::argmax(row.as_slice().unwrap_or(&[])) == Some(l)) as usize;
        }
    }
    Ok((loss / ds.len() as f64, correct as f64 / ds.len() as f64))
}

pub fn run(args: TrainArgs) -> Result<i32> {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without saving");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: finishing the current batch, then saving a checkpoint (Ctrl-C again to quit now)");
        })
        .context("installing the Ctrl-C handler")?;
    }
    let (mut cfg, resume) = match &args.resume {
        Some(dir) => {
            crate::load::check_run_folder(dir)?;
            let mut cfg = RunConfig::load(dir)?;
            let state = TrainerState::load(dir)?;
            match args.epochs {
                Some(e) if e > state.epoch => cfg.epochs = e,
                Some(_) => return nothing_to_do(dir, &cfg, &state),
                None if state.epoch >= cfg.epochs => return nothing_to_do(dir, &cfg, &state),
                None => {}
            }
            (cfg, Some((dir.clone(), state)))
        }
        None => {
            let cfg = RunConfig::from_args(&args)?;
            if !args.overwrite && !args.dry_run {
                refuse_a_used_out(&args)?;
            }
            (cfg, None)
        }
    };
    check_data_folder(&cfg.data)?;
    if args.dry_run {
        return dry_run(cfg, &args);
    }
    let loader = LoaderConfig {
        height: cfg.height,
        width: cfg.width,
        interpolation: cfg.interpolation(),
        preprocess: cfg.preprocess(),
        augment: cfg.augment.into(),
        batch_size: cfg.batch_size,
        shuffle: true,
        seed: cfg.seed,
        strict: args.strict,
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut train =
        Dataset::load(&cfg.data.join("train"), None, loader).context("loading the train split")?;
    for s in &train.skipped {
        eprintln!("warning: {}: {} (skipped)", s.path.display(), s.reason);
    }
    if let Some(n) = cfg.limit_per_class {
        train.truncate_per_class(n);
    }
    if resume.is_some() && cfg.classes != train.classes {
        bail!(
            "{}: the data's classes changed since the run started: {:?} now, {:?} then",
            cfg.data.display(),
            train.classes,
            cfg.classes
        );
    }
    cfg.classes = train.classes.clone();
    let train = Arc::new(train);
    let valid = load_split(&cfg, &cfg.data, "valid", args.strict)?;
    let test = if cfg.data.join("test").is_dir() {
        Some(load_split(&cfg, &cfg.data, "test", args.strict)?)
    } else {
        None
    };
    crate::outln!(
        "Data {}: {} classes; {} train, {} valid, {} test images ({} skipped); loaded in {:.1}s",
        cfg.data.display(),
        cfg.classes.len(),
        train.len(),
        valid.len(),
        test.as_ref().map_or(0, |t| t.len()),
        train.skipped.len() + valid.skipped.len() + test.as_ref().map_or(0, |t| t.skipped.len()),
        t0.elapsed().as_secs_f64()
    );

    let mut clf = crate::load::for_training(&mut cfg)?;
    if resume.is_none() {
        if let Some(from) = &cfg.init_from {
            init_from(&mut clf, from, &cfg.classes)?;
        }
    }
    let mut opt = optimizer(&cfg)?;
    let mut state = TrainerState::default();
    nn::profile::enable(args.profile);
    let dir = match &resume {
        Some((dir, _)) => dir.clone(),
        None => new_run_dir(&args)?,
    };
    if let Some((_, s)) = resume {
        let last = dir.join("last.npz");
        let t = nn::checkpoint::load_npz(&last)
            .with_context(|| format!("reading {}", last.display()))?;
        nn::checkpoint::restore(&mut clf.net.graph, &t, &last, &crate::load::NON_MODEL)?;
        opt.load_state(&t)?;
        if opt.iterations() != s.iterations {
            bail!("{}: checkpoint is at step {} but trainer.json at {}; the run folder is inconsistent", dir.display(), opt.iterations(), s.iterations);
        }
        crate::outln!(
            "Resuming {} at epoch {} of {}, batch {} of {}",
            dir.display(),
            s.epoch + 1,
            cfg.epochs,
            s.next_batch + 1,
            train.num_batches()
        );
        state = s;
    }
    // Saved on resume too: --epochs may have extended the run.
    cfg.save(&dir)?;
    let start_iterations = opt.iterations();

    let unfrozen = clf.net.base_len() - clf.cut().min(clf.net.base_len());
    let use_cache = cfg.augment == data::Augment::default().into();
    let names = clf.net.graph.names();
    let trainable: Vec<&str> = names[clf.cut().min(clf.net.base_len())..clf.net.base_len()]
        .iter()
        .map(String::as_str)
        .collect();
    crate::outln!(
        "Model: MobileNetV2 alpha {} ({} base layers), head GAP{}{} -> Dense({}, softmax); {}",
        cfg.alpha,
        clf.net.base_len(),
        if cfg.dropout > 0.0 {
            format!(" -> Dropout({})", cfg.dropout)
        } else {
            String::new()
        },
        if cfg.dense > 0 {
            format!(" -> Dense({}, relu)", cfg.dense)
        } else {
            String::new()
        },
        cfg.classes.len(),
        if unfrozen == 0 {
            "base frozen".to_string()
        } else {
            format!("trainable base layers: {}", trainable.join(", "))
        }
    );
    let (train_cache, valid_cache) = if use_cache {
        let t = Instant::now();
        let built = FeatureCache::build(&mut clf, &train, "train", args.quiet, &interrupted)
            .and_then(|tc| {
                FeatureCache::build(&mut clf, &valid, "valid", args.quiet, &interrupted)
                    .map(|vc| (tc, vc))
            });
        let (tc, vc) = match built {
            Err(e) if e.is::<InterruptedBeforeTraining>() => {
                crate::outln!("Interrupted while caching features, before any training step.");
                if state.iterations > 0 {
                    crate::outln!("Resume with: {}", resume_command(&dir));
                } else {
                    crate::outln!("Nothing was trained; run the same command again to start over.");
                }
                return Ok(130);
            }
            other => other?,
        };
        crate::outln!(
            "Feature cache: augmentation is off, so the frozen {} runs once per image ({:.0} MB, {:.1}s)",
            if unfrozen == 0 { "base" } else { "part of the base" },
            (tc.bytes() + vc.bytes()) as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        (Some(tc), Some(vc))
    } else {
        crate::outln!("No feature cache: augmentation is on, so the frozen part runs (batch-norm folded) on every batch");
        (None, None)
    };
    crate::outln!(
        "Optimizer: {} lr {}; {}, batch {}; preprocessing {}; run folder {}",
        cfg.optimizer,
        cfg.lr,
        plural(cfg.epochs, "epoch"),
        cfg.batch_size,
        cfg.preprocess,
        dir.display()
    );

    let batches = train.num_batches();
    let mut batches_run = 0u64;
    while state.epoch < cfg.epochs {
        let epoch = state.epoch;
        let started = Instant::now() - std::time::Duration::from_secs_f64(state.seconds);
        let pb = bar(batches as u64, args.quiet);
        pb.set_position(state.next_batch as u64);
        // With --quiet only the closing line of the epoch is printed.
        if !args.quiet {
            pb.println(format!("Epoch {}/{}", epoch + 1, cfg.epochs));
        }
        let order = train.order(epoch);
        let mut stream =
            (train_cache.is_none()).then(|| train.batches(epoch, true, state.next_batch));
        while state.next_batch < batches {
            let b = state.next_batch;
            let idx = &order[b * cfg.batch_size..((b + 1) * cfg.batch_size).min(train.len())];
            let labels: Vec<usize> = idx.iter().map(|&i| train.labels[i]).collect();
            let step = match (&train_cache, stream.as_mut()) {
                (Some(c), _) => clf.train_step_frozen(&c.get(idx), &labels, opt.as_mut()),
                (None, Some(s)) => {
                    let batch = s.next().context("the batch loader stopped early")?;
                    debug_assert_eq!(batch.indices, idx);
                    clf.train_step(&batch.x.into_shared(), &labels, opt.as_mut())
                }
                (None, None) => unreachable!("a stream exists when there is no cache"),
            };
            let out = match step {
                Ok(o) => o,
                Err(mobilenet::Error::NonFinite { loss, .. }) => {
                    pb.abandon();
                    let last = dir.join("last.npz");
                    let kept = if last.exists() {
                        format!(
                            "the last good checkpoint is {} (end of epoch {})",
                            last.display(),
                            state.history.len()
                        )
                    } else {
                        "no checkpoint had been saved yet".into()
                    };
                    bail!("the loss became {loss} at epoch {}, batch {}: training stopped; {kept}. Try a lower --lr.", epoch + 1, b + 1);
                }
                Err(e) => return Err(e.into()),
            };
            state.loss_sum += out.loss as f64 * labels.len() as f64;
            state.seen += labels.len() as u64;
            state.correct += out
                .probs
                .rows()
                .into_iter()
                .zip(&labels)
                .filter(|(r, &l)| nn::loss::argmax(r.as_slice().unwrap_or(&[])) == Some(l))
                .count() as u64;
            state.next_batch += 1;
            state.iterations = opt.iterations();
            batches_run += 1;
            pb.set_position(state.next_batch as u64);
            pb.set_message(format!(
                "loss: {:.4} - accuracy: {:.4}",
                state.loss_sum / state.seen as f64,
                state.correct as f64 / state.seen as f64
            ));
            if args.interrupt_after.is_some_and(|n| batches_run >= n) {
                interrupted.store(true, Ordering::SeqCst);
            }
            if interrupted.load(Ordering::SeqCst) && state.next_batch < batches {
                pb.abandon();
                state.seconds = started.elapsed().as_secs_f64();
                save_checkpoint(&dir.join("last.npz"), &mut clf, opt.as_ref())?;
                state.save(&dir)?;
                crate::outln!(
                    "Interrupted after batch {} of {} of epoch {}: saved {}.",
                    state.next_batch,
                    batches,
                    epoch + 1,
                    dir.join("last.npz").display()
                );
                crate::outln!("Resume with: {}", resume_command(&dir));
                return Ok(130);
            }
        }
        drop(stream);
        pb.finish_and_clear();
        let (val_loss, val_acc) = match &valid_cache {
            Some(c) => score_cached(&mut clf, c, &valid)?,
            None => {
                let r = evaluate(&mut clf, &valid, "valid", Path::new("current weights"), 0)?;
                (r.loss, r.accuracy)
            }
        };
        let rec = EpochRecord {
            epoch: epoch + 1,
            seconds: started.elapsed().as_secs_f64(),
            lr: opt.lr(),
            loss: state.loss_sum / state.seen.max(1) as f64,
            accuracy: state.correct as f64 / state.seen.max(1) as f64,
            val_loss,
            val_accuracy: val_acc,
        };
        crate::outln!(
            "Epoch {}/{} - {:.0}s - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
            rec.epoch, cfg.epochs, rec.seconds, rec.loss, rec.accuracy, rec.val_loss, rec.val_accuracy
        );
        state.history.push(rec);
        state.epoch += 1;
        state.next_batch = 0;
        state.loss_sum = 0.0;
        state.correct = 0;
        state.seen = 0;
        state.seconds = 0.0;
        if state.best_val_loss.is_none_or(|b| val_loss < b) {
            state.best_val_loss = Some(val_loss);
            save_checkpoint(&dir.join("best.npz"), &mut clf, opt.as_ref())?;
        }
        save_checkpoint(&dir.join("last.npz"), &mut clf, opt.as_ref())?;
        state.save(&dir)?;
        history::write(&dir, &state.history)?;
        crate::plots::curves(&dir.join("history.png"), &state.history)?;
        if interrupted.load(Ordering::SeqCst) && state.epoch < cfg.epochs {
            crate::outln!(
                "Interrupted after epoch {}: saved {}.",
                state.epoch,
                dir.join("last.npz").display()
            );
            crate::outln!("Resume with: {}", resume_command(&dir));
            return Ok(130);
        }
    }
    crate::outln!(
        "Training done in {:.1}s; lowest val_loss {:.4} (best.npz); run folder {}",
        t0.elapsed().as_secs_f64(),
        state.best_val_loss.unwrap_or(f64::NAN),
        dir.display()
    );

    let result = match &test {
        Some(test) => Some(test_report(&dir, &cfg, clf, test)?),
        None => None,
    };
    crate::report::write(&dir, &cfg, &state.history, result.as_ref())?;
    crate::outln!("Report: {}", dir.join("report.html").display());
    if args.profile {
        let steps = (opt.iterations() - start_iterations) as usize;
        crate::outln!("\nTime per layer (validation, test and feature-cache passes included):");
        crate::outln!("{}", nn::profile::markdown(&nn::profile::take(), steps));
    }
    Ok(0)
}

/// The final model on the test split: printed, `eval_test.json`, the confusion matrix and the
/// top-losses gallery (Grad-CAM) in the run folder, for the report.
fn test_report(
    dir: &Path,
    cfg: &RunConfig,
    mut clf: mobilenet::Classifier,
    test: &data::Dataset,
) -> Result<EvalResult> {
    let r = evaluate(
        &mut clf,
        test,
        "test",
        &dir.join("last.npz"),
        crate::evaluate::TOP_LOSSES,
    )?;
    crate::outln!("\nTest split, final model (last.npz):");
    print(&r, 20);
    let text = serde_json::to_string_pretty(&r)?;
    nn::checkpoint::write_bytes_atomic(&dir.join("eval_test.json"), text.as_bytes())?;
    crate::plots::confusion(&dir.join("confusion_test.png"), &r.confusion)?;
    let mut ex = crate::explain::Explainer::for_run(clf, cfg)?;
    crate::gallery::write(&mut ex, &r.top_losses, &dir.join("top_losses_test"))?;
    Ok(r)
}

/// A finished run resumed without more epochs: nothing to train, and how to train more.
fn nothing_to_do(dir: &Path, cfg: &RunConfig, state: &TrainerState) -> Result<i32> {
    eprintln!(
        "{}: this run finished {} of {}; nothing to do.\n\
         To train it further: {} --epochs N (N > {})\n\
         To start a new run from its weights: {} train --init-from {} [--data ... --out ...]",
        dir.display(),
        plural(state.epoch, "epoch"),
        cfg.epochs,
        resume_command(dir),
        state.epoch,
        std::env::args().next().unwrap_or_else(|| "app".into()),
        dir.display()
    );
    Ok(0)
}

/// `--out DIR` that already holds files, without `--overwrite`.
fn refuse_a_used_out(args: &TrainArgs) -> Result<()> {
    let Some(out) = &args.out else { return Ok(()) };
    let holds_files = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if holds_files {
        bail!(
            "{}: the folder is not empty{}; pass --overwrite to replace it, --resume {} to continue it, or another --out",
            out.display(),
            if out.join("config.json").exists() { " (it holds a run)" } else { "" },
            out.display()
        );
    }
    Ok(())
}

/// `--dry-run`: the configuration the run would use (classes read from the train folder), no work.
fn dry_run(mut cfg: RunConfig, args: &TrainArgs) -> Result<i32> {
    let train = data::ImageFolder::open(&cfg.data.join("train"), None)
        .context("reading the train split's classes")?;
    cfg.classes = train.classes;
    crate::outln!("{}", serde_json::to_string_pretty(&cfg)?);
    let folder = match (&args.resume, &args.out) {
        (Some(r), _) => format!("{} (resumed)", r.display()),
        (None, Some(o)) => o.display().to_string(),
        (None, None) => "runs/<timestamp> (new)".into(),
    };
    crate::outln!(
        "Dry run: {} training images; run folder {folder}; nothing was written.",
        train.items.len()
    );
    Ok(0)
}

/// `--init-from RUN`: the model starts from that run's final weights (base and head).
fn init_from(clf: &mut Classifier, run: &Path, classes: &[String]) -> Result<()> {
    crate::load::check_run_folder(run)?;
    let from = RunConfig::load(run)?;
    if from.classes != classes {
        bail!(
            "--init-from {}: that run has classes {:?}, this data {:?}",
            run.display(),
            from.classes,
            classes
        );
    }
    let last = run.join("last.npz");
    let t =
        nn::checkpoint::load_npz(&last).with_context(|| format!("reading {}", last.display()))?;
    nn::checkpoint::restore(&mut clf.net.graph, &t, &last, &crate::load::NON_MODEL).with_context(
        || {
            format!(
                "--init-from {}: its model differs from this one",
                run.display()
            )
        },
    )?;
    crate::outln!("Initial weights: {} (--init-from)", last.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// A damaged or random trainer.json is loaded or refused, never a panic.
        #[test]
        fn damaged_or_random_trainer_states_never_panic(
            cut in 0.0f64..=1.0,
            flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..6),
            random in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let state = TrainerState { epoch: 2, next_batch: 3, best_val_loss: Some(0.5), ..Default::default() };
            let mut b = serde_json::to_vec_pretty(&state).unwrap();
            b.truncate((b.len() as f64 * cut) as usize);
            for (pos, v) in flips {
                if !b.is_empty() {
                    let i = ((b.len() - 1) as f64 * pos) as usize;
                    b[i] = v;
                }
            }
            for bytes in [b, random] {
                let d = tempfile::tempdir().unwrap();
                std::fs::write(d.path().join("trainer.json"), bytes).unwrap();
                if let Err(e) = TrainerState::load(d.path()) {
                    let text = format!("{e:#}");
                    prop_assert!(text.contains("trainer.json"), "{}", text);
                }
            }
        }
    }

    #[test]
    fn new_run_folders_never_take_an_existing_name() {
        let d = tempfile::tempdir().unwrap();
        let got: Vec<PathBuf> = (0..3)
            .map(|_| claim_new_folder(d.path(), "20261202-120000").unwrap())
            .collect();
        let names: Vec<&str> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["20261202-120000", "20261202-120000-2", "20261202-120000-3"]
        );
        assert!(got.iter().all(|p| p.is_dir()));
    }
}
