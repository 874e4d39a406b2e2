//! `train`: sets a run up (configuration, data, model, run folder, feature cache), hands it to the
//! fit loop ([`crate::fit`]) with the callbacks the configuration asks for, then scores the test
//! split and writes the report.

use crate::cli::TrainArgs;
use crate::config::{RunConfig, DEFAULT_DATA};
use crate::evaluate::{evaluate, load_split, print, EvalResult};
use crate::fit::cache::{FeatureCache, InterruptedBeforeTraining};
use crate::fit::callbacks::{self as cb, Callback, CallbackList, Ending};
use crate::fit::{Fit, TrainerState};
use anyhow::{bail, Context, Result};
use data::{Dataset, LoaderConfig};
use mobilenet::Classifier;
use nn::optim::{Adam, AdamParams, Optimizer, Sgd, SgdParams};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub(crate) fn optimizer(cfg: &RunConfig) -> Result<Box<dyn Optimizer>> {
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
pub(crate) fn check_data_folder(data: &Path) -> Result<()> {
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

/// Ctrl-C sets the flag the fit loop watches; a second Ctrl-C exits at once.
fn install_ctrl_c() -> Result<Arc<AtomicBool>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: finishing the current batch, then saving a checkpoint (Ctrl-C again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(interrupted)
}

/// A new run's configuration, or a resumed run's with its folder and loop state; `Err(code)` when
/// a finished run has nothing left to do.
type Resume = Option<(PathBuf, TrainerState)>;

fn start_or_resume(args: &TrainArgs) -> Result<std::result::Result<(RunConfig, Resume), i32>> {
    let Some(dir) = &args.resume else {
        let cfg = RunConfig::from_args(args)?;
        if !args.overwrite && !args.dry_run {
            refuse_a_used_out(args)?;
        }
        return Ok(Ok((cfg, None)));
    };
    crate::load::check_run_folder(dir)?;
    let mut cfg = RunConfig::load(dir)?;
    let state = TrainerState::load(dir)?;
    match args.epochs {
        Some(e) if e > state.epoch => cfg.epochs = e,
        Some(_) => return nothing_to_do(dir, &cfg, &state).map(Err),
        None if state.epoch >= cfg.epochs => return nothing_to_do(dir, &cfg, &state).map(Err),
        None => {}
    }
    Ok(Ok((cfg, Some((dir.clone(), state)))))
}

/// The splits of a run: train (shuffled, augmented as configured), valid, and test when present.
pub(crate) struct Splits {
    pub train: Arc<Dataset>,
    pub valid: Dataset,
    pub test: Option<Dataset>,
}

pub(crate) fn load_splits(cfg: &mut RunConfig, strict: bool, resumed: bool) -> Result<Splits> {
    let t0 = Instant::now();
    let loader = LoaderConfig {
        height: cfg.height,
        width: cfg.width,
        interpolation: cfg.interpolation(),
        preprocess: cfg.preprocess(),
        augment: cfg.augment.into(),
        batch_size: cfg.batch_size,
        shuffle: true,
        seed: cfg.seed,
        strict,
        ..Default::default()
    };
    // The classes come from the data here (a resumed run checks them below).
    let listing = crate::evaluate::listing(cfg, &cfg.data, "train", None)?;
    let mut train = Dataset::from_folder(listing, loader).context("loading the train split")?;
    for s in &train.skipped {
        eprintln!("warning: {}: {} (skipped)", s.path.display(), s.reason);
    }
    if let Some(n) = cfg.limit_per_class {
        train.truncate_per_class(n);
    }
    if resumed && cfg.classes != train.classes {
        bail!(
            "{}: the data's classes changed since the run started: {:?} now, {:?} then",
            cfg.data.display(),
            train.classes,
            cfg.classes
        );
    }
    cfg.classes = train.classes.clone();
    let valid = match cfg.validation_split {
        Some(_) => {
            if crate::evaluate::has_split(cfg, &cfg.data, "valid") {
                crate::outln!(
                    "Validation: --validation-split takes it from train/; valid/ is not used"
                );
            }
            crate::evaluate::split_validation(&mut train, cfg, strict)?
        }
        None => load_split(cfg, &cfg.data, "valid", strict)?,
    };
    let test = if crate::evaluate::has_split(cfg, &cfg.data, "test") {
        Some(load_split(cfg, &cfg.data, "test", strict)?)
    } else {
        None
    };
    crate::outln!(
        "Data {}: {} classes; {} train, {} valid, {} test images ({} skipped); loaded in {:.1}s",
        cfg.labels_csv.as_ref().unwrap_or(&cfg.data).display(),
        cfg.classes.len(),
        train.len(),
        valid.len(),
        test.as_ref().map_or(0, |t| t.len()),
        train.skipped.len() + valid.skipped.len() + test.as_ref().map_or(0, |t| t.skipped.len()),
        t0.elapsed().as_secs_f64()
    );
    Ok(Splits {
        train: Arc::new(train),
        valid,
        test,
    })
}

/// A resumed run's model and optimizer from `last.npz`, checked against `trainer.json`.
fn restore(
    dir: &Path,
    clf: &mut Classifier,
    opt: &mut dyn Optimizer,
    s: &TrainerState,
    cfg: &RunConfig,
    batches: usize,
) -> Result<()> {
    let last = dir.join("last.npz");
    let t =
        nn::checkpoint::load_npz(&last).with_context(|| format!("reading {}", last.display()))?;
    nn::checkpoint::restore(&mut clf.net.graph, &t, &last, &crate::load::NON_MODEL)?;
    opt.load_state(&t)?;
    if opt.iterations() != s.iterations {
        bail!(
            "{}: checkpoint is at step {} but trainer.json at {}; the run folder is inconsistent",
            dir.display(),
            opt.iterations(),
            s.iterations
        );
    }
    crate::outln!(
        "Resuming {} at epoch {} of {}, batch {} of {}",
        dir.display(),
        s.epoch + 1,
        cfg.epochs,
        s.next_batch + 1,
        batches
    );
    Ok(())
}

/// One line: the base, the head, and which base layers train.
fn describe_model(cfg: &RunConfig, clf: &mut Classifier) {
    let base = clf.net.base_len();
    let cut = clf.cut().min(base);
    let names = clf.net.graph.names();
    let trainable: Vec<&str> = names[cut..base].iter().map(String::as_str).collect();
    crate::outln!(
        "Model: MobileNetV2 alpha {} ({} base layers), head GAP{}{} -> Dense({}, softmax); {}",
        cfg.alpha,
        base,
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
        if trainable.is_empty() {
            "base frozen".to_string()
        } else {
            format!("trainable base layers: {}", trainable.join(", "))
        }
    );
}

/// The train and valid features when augmentation is off; `Err(code)` when Ctrl-C came first.
#[allow(clippy::type_complexity)]
pub(crate) fn build_caches(
    clf: &mut Classifier,
    splits: &Splits,
    cfg: &RunConfig,
    quiet: bool,
    interrupted: &AtomicBool,
) -> Result<std::result::Result<Option<(FeatureCache, FeatureCache)>, String>> {
    if cfg.augment != data::Augment::default().into() {
        crate::outln!("No feature cache: augmentation is on, so the frozen part runs (batch-norm folded) on every batch");
        return Ok(Ok(None));
    }
    let t = Instant::now();
    let built =
        FeatureCache::build(clf, &splits.train, "train", quiet, interrupted).and_then(|tc| {
            FeatureCache::build(clf, &splits.valid, "valid", quiet, interrupted).map(|vc| (tc, vc))
        });
    let (tc, vc) = match built {
        Err(e) if e.is::<InterruptedBeforeTraining>() => return Ok(Err(e.to_string())),
        other => other?,
    };
    let unfrozen = clf.net.base_len() > clf.cut().min(clf.net.base_len());
    crate::outln!(
        "Feature cache: augmentation is off, so the frozen {} runs once per image ({:.0} MB, {:.1}s)",
        if unfrozen { "part of the base" } else { "base" },
        (tc.bytes() + vc.bytes()) as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(Ok(Some((tc, vc))))
}

/// The callbacks of a run, in the order Keras users would list them.
fn callbacks(
    cfg: &RunConfig,
    args: &TrainArgs,
    interrupted: Arc<AtomicBool>,
) -> Result<CallbackList> {
    let mut list: Vec<Box<dyn Callback>> = Vec::new();
    if let Some(s) = cfg.lr_schedule()? {
        list.push(Box::new(cb::LrScheduler::new(
            cfg.lr,
            s,
            cfg.warmup_epochs,
            cfg.epochs,
        )));
    }
    list.push(Box::new(cb::ProgressLogger::new(args.quiet)));
    list.push(Box::new(cb::TerminateOnNaN));
    list.push(Box::new(cb::Interrupt::new(
        interrupted,
        args.interrupt_after,
    )));
    if let Some(r) = cfg.reduce_lr_on_plateau {
        list.push(Box::new(cb::ReduceLrOnPlateau::new(r.factor, r.patience)));
    }
    list.push(Box::new(cb::ModelCheckpoint));
    list.push(Box::new(cb::HistoryWriter));
    if let Some(e) = cfg.early_stopping {
        list.push(Box::new(cb::EarlyStopping::new(
            e.patience,
            e.restore_best_weights,
        )));
    }
    Ok(CallbackList(list))
}

/// `--class-weight` resolved on the training labels, and said.
fn class_weights(cfg: &RunConfig, train: &Dataset) -> Result<Option<Vec<f32>>> {
    let Some(spec) = &cfg.class_weight else {
        return Ok(None);
    };
    let w = crate::class_weight::ClassWeight::parse(spec)?.resolve(&cfg.classes, &train.labels)?;
    let shown: Vec<String> = cfg
        .classes
        .iter()
        .zip(&w)
        .map(|(c, w)| format!("{c} {w:.3}"))
        .collect();
    crate::outln!("Class weights ({spec}): {}", shown.join(", "));
    Ok(Some(w))
}

/// Ctrl-C while the features were being cached: nothing of this session was trained.
fn interrupted_while_caching(dir: &Path, state: &TrainerState) -> i32 {
    crate::outln!("Interrupted while caching features, before any training step.");
    if state.iterations > 0 || state.epoch > 0 {
        crate::outln!("Resume with: {}", resume_command(dir));
    } else {
        crate::outln!("Nothing was trained; run the same command again to start over.");
    }
    130
}

fn interrupted_message(dir: &Path, state: &TrainerState, batches: usize) {
    let last = dir.join("last.npz");
    if state.next_batch > 0 {
        crate::outln!(
            "Interrupted after batch {} of {} of epoch {}: saved {}.",
            state.next_batch,
            batches,
            state.epoch + 1,
            last.display()
        );
    } else {
        crate::outln!(
            "Interrupted after epoch {}: saved {}.",
            state.epoch,
            last.display()
        );
    }
    crate::outln!("Resume with: {}", resume_command(dir));
}

pub fn run(args: TrainArgs) -> Result<i32> {
    let interrupted = install_ctrl_c()?;
    let (mut cfg, resume) = match start_or_resume(&args)? {
        Ok(go) => go,
        Err(code) => return Ok(code),
    };
    if cfg.labels_csv.is_none() {
        check_data_folder(&cfg.data)?;
    }
    if args.dry_run {
        return dry_run(cfg, &args);
    }
    let t0 = Instant::now();
    let splits = load_splits(&mut cfg, args.strict, resume.is_some())?;
    let mut clf = crate::load::for_training(&mut cfg)?;
    if let (None, Some(from)) = (&resume, &cfg.init_from) {
        init_from(&mut clf, from, &cfg.classes)?;
    }
    let mut opt = optimizer(&cfg)?;
    nn::profile::enable(args.profile);
    let batches = splits.train.num_batches();
    let (dir, mut state) = match resume {
        Some((dir, s)) => {
            restore(&dir, &mut clf, opt.as_mut(), &s, &cfg, batches)?;
            (dir, s)
        }
        None => (new_run_dir(&args)?, TrainerState::default()),
    };
    // Saved on resume too: --epochs may have extended the run.
    cfg.save(&dir)?;
    let mut cbs = callbacks(&cfg, &args, interrupted.clone())?;
    let class_weights = class_weights(&cfg, &splits.train)?;
    let mut steps = 0u64;
    for phase in cfg.phases() {
        if state.epoch >= phase.end {
            continue;
        }
        if phase.start > 0 && state.epoch == phase.start && state.next_batch == 0 {
            // As Keras users recompile after unfreezing: a new optimizer at the phase's rate.
            opt = optimizer(&RunConfig {
                lr: phase.lr,
                ..cfg.clone()
            })?;
            state.lr = Some(phase.lr);
            crate::outln!(
                "Fine-tuning from epoch {}: the last {} base layers trainable, lr {}",
                phase.start + 1,
                phase.unfreeze,
                phase.lr
            );
        }
        clf.unfreeze_last(phase.unfreeze);
        describe_model(&cfg, &mut clf);
        if !args.quiet {
            let table = crate::summary::of_classifier(&mut clf, cfg.alpha, args.verbose)?;
            crate::outln!("{}", table.trim_end());
        }
        let Ok(cache) = build_caches(&mut clf, &splits, &cfg, args.quiet, &interrupted)? else {
            return Ok(interrupted_while_caching(&dir, &state));
        };
        crate::outln!(
            "Optimizer: {} lr {}; {}, batch {}; preprocessing {}; run folder {}",
            cfg.optimizer,
            state.lr.unwrap_or(phase.lr),
            plural(phase.end - state.epoch, "epoch"),
            cfg.batch_size,
            cfg.preprocess,
            dir.display()
        );
        let before = opt.iterations();
        let ending = Fit {
            clf: &mut clf,
            opt: opt.as_mut(),
            train: &splits.train,
            valid: &splits.valid,
            cache,
            dir: &dir,
            until: phase.end,
            epochs: cfg.epochs,
            class_weights: class_weights.clone(),
        }
        .run(&mut state, &mut cbs)?;
        steps += opt.iterations() - before;
        match ending {
            Ending::Interrupted => {
                interrupted_message(&dir, &state, batches);
                return Ok(130);
            }
            Ending::Stopped(_) => break,
            Ending::Completed => {}
        }
    }
    crate::outln!(
        "Training done in {:.1}s; lowest val_loss {:.4} (best.npz); run folder {}",
        t0.elapsed().as_secs_f64(),
        state.best_val_loss.unwrap_or(f64::NAN),
        dir.display()
    );
    let result = match &splits.test {
        Some(test) => Some(test_report(&dir, &cfg, clf, test)?),
        None => None,
    };
    crate::report::write(&dir, &cfg, &state.history, result.as_ref())?;
    crate::outln!("Report: {}", dir.join("report.html").display());
    if args.profile {
        crate::outln!("\nTime per layer (validation, test and feature-cache passes included):");
        crate::outln!(
            "{}",
            nn::profile::markdown(&nn::profile::take(), steps as usize)
        );
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
