//! `predict`: classifies a photo collection of any size with a trained run, or with ImageNet labels
//! from weights that have the top. Inputs are expanded in order ([`inputs`]), decoded a batch ahead
//! on the worker pool ([`stream`]), scored by the folded whole-network plan, and written as they
//! come ([`output`]); memory does not grow with the number of photos.

pub mod inputs;
mod output;
mod stream;

use crate::cli::PredictArgs;
use crate::scoring::Scorer;
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use inputs::Shard;
use mobilenet::imagenet::top_k;
use output::{Output, Ranked};
use std::path::PathBuf;
use std::time::Instant;
pub use stream::Decoding;
pub(crate) use stream::{decode_in_batches, Decoded};

/// Exit status when the run finished but some files were skipped.
pub const EXIT_SKIPPED: i32 = 1;

fn open_scorer(args: &PredictArgs) -> Result<Scorer> {
    let source = args.model.source_or("predict", &args.quantized)?;
    Scorer::open(source, args.interpolation.as_deref())
}

fn progress(total: usize, quiet: bool) -> ProgressBar {
    // indicatif draws nothing when stderr is not a terminal.
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total as u64), target);
    bar.set_style(
        ProgressStyle::with_template("{pos}/{len} images [{bar:30}] {per_sec:.0} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Counts for the closing summary.
#[derive(Default)]
struct Tally {
    classified: usize,
    skipped: usize,
}

/// Scores one decoded batch and writes its lines in input order; bad files are warned and skipped
/// (or, with `--strict`, end the run).
fn score_batch(
    batch: Decoded,
    paths: &[PathBuf],
    scorer: &Scorer,
    args: &PredictArgs,
    out: &mut Output,
    bar: &ProgressBar,
    tally: &mut Tally,
) -> Result<()> {
    let count = batch.range.len();
    let split = batch.split(scorer.predictor.height, scorer.predictor.width)?;
    for why in split.failures {
        if args.strict {
            bail!("{why} (--strict)");
        }
        bar.suspend(|| eprintln!("warning: {why} (skipped)"));
        tally.skipped += 1;
    }
    if let Some((x, good)) = split.batch {
        let probs = scorer.predictor.predict(&x)?;
        for (&i, row) in good.iter().zip(probs.rows()) {
            let row = row.to_vec();
            let top: Vec<Ranked> = top_k(&row, args.top)
                .into_iter()
                .map(|(index, probability)| Ranked {
                    label: scorer.classes.get(index).map_or("?", String::as_str),
                    index,
                    probability,
                })
                .collect();
            bar.suspend(|| out.record(&paths[i], &top))?;
        }
        tally.classified += good.len();
    }
    bar.inc(count as u64);
    Ok(())
}

pub fn run(args: PredictArgs) -> Result<i32> {
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let scorer = open_scorer(&args)?;
    let top = args.top.min(scorer.classes.len());
    let mut paths = inputs::expand(&args.images, args.list.as_deref())?;
    if let Some(s) = shard {
        paths = paths[s.range(paths.len())].to_vec();
    }
    if !args.quiet {
        eprintln!("{}", scorer.description);
    }
    nn::profile::enable(args.profile);
    let header = shard.is_none_or(Shard::is_first);
    let mut out = Output::open(args.format, args.output.as_deref(), top, header)?;
    let decoding = Decoding {
        height: scorer.predictor.height,
        width: scorer.predictor.width,
        interpolation: scorer.interpolation,
        preprocess: scorer.preprocess,
        limits: data::DecodeLimits::default(),
    };
    let bar = progress(paths.len(), args.quiet);
    let started = Instant::now();
    let mut tally = Tally::default();
    let args = PredictArgs { top, ..args };
    std::thread::scope(|scope| -> Result<()> {
        let batches = decode_in_batches(scope, &paths, args.batch_size, decoding);
        for batch in batches {
            score_batch(batch, &paths, &scorer, &args, &mut out, &bar, &mut tally)?;
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    out.finish()?;
    summary(&tally, started.elapsed().as_secs_f64(), &args);
    if args.profile {
        crate::outln!("\nTime per step of the folded plan:");
        crate::outln!("{}", nn::profile::markdown(&nn::profile::take(), 1));
    }
    Ok(if tally.skipped > 0 { EXIT_SKIPPED } else { 0 })
}

fn summary(t: &Tally, seconds: f64, args: &PredictArgs) {
    let mut line = format!(
        "Classified {} image{}, skipped {} in {:.1}s ({:.1} images/s)",
        t.classified,
        if t.classified == 1 { "" } else { "s" },
        t.skipped,
        seconds,
        t.classified as f64 / seconds.max(1e-9)
    );
    if let Some(mib) = crate::memory::peak_mib() {
        line.push_str(&format!("; peak memory {mib:.0} MiB"));
    }
    if let Some(o) = &args.output {
        line.push_str(&format!("; results in {}", o.display()));
    }
    eprintln!("{line}");
    if t.skipped > 0 && !args.quiet {
        eprintln!("(exit status {EXIT_SKIPPED}: some files were skipped, each named above)");
    }
}
