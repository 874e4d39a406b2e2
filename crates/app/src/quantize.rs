//! `quantize`: post-training int8 quantization of a run or of ImageNet weights. Calibrates on real
//! photos (a run's train split by default), writes the model file atomically, then scores the
//! int8 and the f32 model side by side on held-out photos so the user sees what was lost.

use crate::cli::QuantizeArgs;
use crate::config::RunConfig;
use crate::predict::{decode_in_batches, inputs, Decoding};
use crate::scoring::{self, Network, Source};
use anyhow::{bail, Context, Result};
use mobilenet::{Calibrator, Predictor, QuantizedInfo};
use nn::Tensor;
use std::path::PathBuf;
use std::time::Instant;

/// Images per decoding batch.
const BATCH: usize = 32;

/// Photos to score, with their class index when known.
struct CheckSet {
    name: String,
    paths: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
}

/// `count` paths spread evenly over `all` (all of them when there are fewer).
fn spread(all: Vec<PathBuf>, count: usize) -> Vec<PathBuf> {
    if all.len() <= count {
        return all;
    }
    (0..count)
        .map(|i| all[i * all.len() / count].clone())
        .collect()
}

/// A run's split as a check set (`None` when the run has no such split).
fn run_split(cfg: &RunConfig, split: &str) -> Result<Option<CheckSet>> {
    if !crate::evaluate::has_split(cfg, &cfg.data, split) {
        return Ok(None);
    }
    let folder = crate::evaluate::listing(cfg, &cfg.data, split, Some(&cfg.classes))?;
    let (paths, labels) = folder.items.into_iter().unzip();
    Ok(Some(CheckSet {
        name: format!("{split} split"),
        paths,
        labels: Some(labels),
    }))
}

/// The calibration photos and the check sets the flags (or the run) name.
fn photos(args: &QuantizeArgs, source: &Source) -> Result<(Vec<PathBuf>, Vec<CheckSet>)> {
    let run = match source {
        Source::Run { dir, .. } => Some(RunConfig::load(dir)?),
        _ => None,
    };
    let calibration = match (&run, args.calibration.is_empty()) {
        (_, false) => inputs::expand(&args.calibration, None)?,
        (Some(cfg), true) => run_split(cfg, "train")?
            .with_context(|| format!("the run's data ({}) has no train split; pass --calibration DIR", cfg.data.display()))?
            .paths,
        (None, true) => bail!(
            "--weights needs --calibration DIR: photos like those the model will classify (100-500 are enough)"
        ),
    };
    if calibration.is_empty() {
        bail!("no calibration photos found in {:?}", args.calibration);
    }
    let mut checks = Vec::new();
    if !args.check.is_empty() {
        checks.push(CheckSet {
            name: "--check photos".into(),
            paths: inputs::expand(&args.check, None)?,
            labels: None,
        });
    } else if let Some(cfg) = &run {
        for split in ["valid", "test"] {
            checks.extend(run_split(cfg, split)?);
        }
    }
    Ok((spread(calibration, args.samples), checks))
}

/// Decodes `paths` a batch at a time (bad files warned and skipped) and hands each batch, with
/// the indices of the photos in it, to `f`.
fn for_each_batch(
    paths: &[PathBuf],
    decoding: Decoding,
    mut f: impl FnMut(&Tensor, &[usize]) -> Result<()>,
) -> Result<usize> {
    let mut skipped = 0;
    std::thread::scope(|scope| -> Result<()> {
        for batch in decode_in_batches(scope, paths, BATCH, decoding) {
            let split = batch.split(decoding.height, decoding.width)?;
            for why in &split.failures {
                eprintln!("warning: {why} (skipped)");
            }
            skipped += split.failures.len();
            if let Some((x, good)) = split.batch {
                f(&x, &good)?;
            }
        }
        Ok(())
    })?;
    Ok(skipped)
}

/// The top-1 class of a row of probabilities.
fn top1(r: ndarray::ArrayView1<f32>) -> Option<usize> {
    nn::loss::argmax(&r.to_vec())
}

/// Top-1 agreement of the two models on a check set, and each one's accuracy when labels are known.
fn compare(
    set: &CheckSet,
    f32_model: &Predictor,
    int8: &Predictor,
    decoding: Decoding,
) -> Result<String> {
    let (mut n, mut agree, mut right_f, mut right_q) = (0, 0, 0, 0);
    for_each_batch(&set.paths, decoding, |x, idx| {
        let (pf, pq) = (f32_model.predict(x)?, int8.predict(x)?);
        for ((i, a), b) in idx.iter().zip(pf.rows()).zip(pq.rows()) {
            let (tf, tq) = (top1(a), top1(b));
            n += 1;
            agree += usize::from(tf == tq);
            if let Some(l) = &set.labels {
                right_f += usize::from(tf == Some(l[*i]));
                right_q += usize::from(tq == Some(l[*i]));
            }
        }
        Ok(())
    })?;
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    let mut line = format!(
        "{}: top-1 agreement with f32 {:.2}% ({agree}/{n})",
        set.name,
        pct(agree)
    );
    if set.labels.is_some() {
        line.push_str(&format!(
            "; accuracy f32 {:.2}% ({right_f}/{n}), int8 {:.2}% ({right_q}/{n})",
            pct(right_f),
            pct(right_q)
        ));
    }
    Ok(line)
}

fn calibrator(network: &mut Network) -> Result<Calibrator> {
    Ok(match network {
        Network::Trained(c) => Calibrator::for_classifier(c)?,
        Network::ImageNet(n) => Calibrator::for_model(n)?,
    })
}

pub fn run(args: QuantizeArgs) -> Result<i32> {
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    crate::export::refuse_existing(&args.out, args.force)?;
    let source = args.model.source("quantize")?;
    let origin = match &source {
        Source::Run { dir, best } => format!(
            "run {} ({})",
            dir.display(),
            crate::evaluate::checkpoint_name(*best)
        ),
        Source::Weights { dir, .. } => format!("ImageNet weights {}", dir.display()),
        Source::Quantized { file } => bail!("{}: already quantized", file.display()),
    };
    let (calibration, checks) = photos(&args, &source)?;
    let mut loaded = scoring::load(source, args.interpolation.as_deref())?;
    eprintln!("{}", loaded.description);
    let decoding = {
        let net = loaded.network.net_mut();
        Decoding {
            height: net.config.height,
            width: net.config.width,
            interpolation: loaded.interpolation,
            preprocess: loaded.preprocess,
            limits: data::DecodeLimits::default(),
        }
    };
    let started = Instant::now();
    let mut cal = calibrator(&mut loaded.network)?;
    let skipped = for_each_batch(&calibration, decoding, |x, _| Ok(cal.observe(x)?))?;
    let images = cal.images();
    let plan = cal.finish()?;
    let info = QuantizedInfo {
        labels: loaded.classes.clone(),
        preprocess: loaded.preprocess.name().into(),
        interpolation: scoring::interpolation_name(loaded.interpolation).into(),
        source: origin,
    };
    let bytes = plan.to_bytes(&info)?;
    crate::export::write_model(&args.out, &bytes, args.force)?;
    let (int, all) = plan.integer_steps();
    println!(
        "Wrote {} ({:.1} MB): {int} of {all} steps in int8, calibrated (min-max) on {images} photos{} in {:.1}s",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        match skipped {
            0 => String::new(),
            k => format!(" ({k} skipped)"),
        },
        started.elapsed().as_secs_f64()
    );
    warn_without_vnni();
    let f32_model = scoring::Scorer::compile(&mut loaded)?.predictor;
    let int8 = Predictor::from_quantized(plan);
    for set in &checks {
        println!("{}", compare(set, &f32_model, &int8, decoding)?);
    }
    Ok(0)
}

/// The int8 model's speed depends on the CPU: without AVX-512 VNNI its kernels multiply through
/// AVX2's `vpmaddwd` (or plain Rust), slower than the f32 model on the same CPU. Says so, so that
/// nobody deploys a slower model by mistake.
fn warn_without_vnni() {
    use tensor_core::int8::Isa;
    let isa = Isa::detect();
    if !isa.runs_vnni() {
        eprintln!(
            "note: this CPU has no AVX-512 VNNI, so int8 runs on its {isa:?} kernels here, which are \
             slower than the f32 model on such a CPU (on an AVX2 AMD Zen 2: about half its speed); \
             the file runs on any CPU and is 2.5x the f32 speed where VNNI is present"
        );
    }
}
