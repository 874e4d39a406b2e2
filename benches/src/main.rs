//! This project's side of `benches/compare.sh`: the same measurements as `peers/tf_peer.py` and
//! `peers/torch_peer.py`, on the study's model (MobileNetV2 base + GAP + Dense(256, relu) +
//! Dense(15)), printed as one JSON line per run. Peak memory is the process's VmHWM, read the
//! same way as the peers' `ru_maxrss`.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use mobilenet::{Classifier, HeadConfig, MobileNetV2};
use nn::optim::{Adam, AdamParams};
use nn::Tensor;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Task {
    /// Inference (frozen base, batch-norm folded).
    Infer,
    /// (A) one training step, base frozen.
    TrainA,
    /// (B) one training step, the last 3 base layers trainable.
    TrainB,
    /// (C) one training step, everything trainable.
    TrainC,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum)]
    task: Task,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Measure for at least this long (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    min_iters: usize,
    /// Weights without or with top (the top is ignored), alpha 1.0.
    #[arg(long, default_value = "weights/mobilenet_v2_1.0_224")]
    weights: PathBuf,
    /// With `infer`: run this quantized model (`app quantize`) instead of the f32 plan.
    #[arg(long, conflicts_with = "int8")]
    model: Option<PathBuf>,
    /// With `infer`: quantize the benchmark's model to int8 first, calibrated on --calib photos.
    #[arg(long, requires = "calib")]
    int8: bool,
    /// A folder of photos (its files sorted; 100 spread evenly) to calibrate --int8 on, decoded
    /// and scaled as the peers do (bilinear resize, x/127.5 - 1).
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Also write the time per layer (Markdown) to this file.
    #[arg(long)]
    profile: Option<PathBuf>,
}

/// Every file under `dir`, sorted.
fn files(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        match p.is_dir() {
            true => out.extend(files(&p)?),
            false => out.push(p),
        }
    }
    out.sort();
    Ok(out)
}

/// The classifier quantized to int8, calibrated on 100 photos of `dir` (as the int8 peers are).
fn quantized(
    clf: &mut Classifier,
    dir: &std::path::Path,
    size: usize,
) -> Result<mobilenet::Predictor> {
    let all = files(dir)?;
    let picks: Vec<&PathBuf> = (0..100.min(all.len()))
        .map(|i| &all[i * all.len() / 100.min(all.len())])
        .collect();
    let mut cal = mobilenet::Calibrator::for_classifier(clf)?;
    for chunk in picks.chunks(25) {
        let mut x = Vec::with_capacity(chunk.len() * size * size * 3);
        for p in chunk {
            let img = data::decode_rgb(p, data::DecodeLimits::default())?;
            let img = data::resize(
                &img,
                size as u32,
                size as u32,
                data::Interpolation::Bilinear,
            );
            x.extend(
                img.as_raw()
                    .iter()
                    .map(|&v| data::Preprocess::Mobilenet.apply(v as f32)),
            );
        }
        cal.observe(&Tensor::from_shape_vec(vec![chunk.len(), size, size, 3], x)?.into_shared())?;
    }
    Ok(mobilenet::Predictor::from_quantized(cal.finish()?))
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Warm-up twice, then repeats `f` until `seconds` have passed and at least `min_iters` ran.
fn measure(args: &Args, mut f: impl FnMut() -> Result<()>) -> Result<(Duration, usize)> {
    for _ in 0..2 {
        f()?;
    }
    nn::profile::take(); // the warm-up is not profiled
    let (start, mut times) = (Instant::now(), Vec::new());
    while times.len() < args.min_iters || start.elapsed().as_secs_f64() < args.seconds {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    let n = times.len();
    Ok((median(times), n))
}

fn main() -> Result<()> {
    let args = Args::parse();
    // As the app does: keep freed buffers for the next step instead of refaulting fresh pages.
    tensor_core::buffer::retain_freed_memory();
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let net = MobileNetV2::from_path(&args.weights, Some(false))
        .with_context(|| format!("loading {} (cargo xtask fetch)", args.weights.display()))?;
    if net.config.height != args.size || net.config.width != args.size {
        bail!(
            "{} is built for {}x{}; pass --size {}",
            args.weights.display(),
            net.config.height,
            net.config.width,
            net.config.height
        );
    }
    let base_len = net.base_len();
    let head = HeadConfig {
        dense: 256,
        dropout: 0.0,
        classes: 15,
        seed: 0,
    };
    let mut clf = Classifier::new(net, head)?;
    let (n, s) = (args.batch, args.size);
    let x = Tensor::from_shape_fn(vec![n, s, s, 3], |i| {
        ((i[0] * 13 + i[1] * 7 + i[2] * 3 + i[3]) % 255) as f32 / 127.5 - 1.0
    });
    let labels: Vec<usize> = (0..n).map(|i| i % head.classes).collect();
    let mut opt = Adam::new(AdamParams {
        lr: 1e-5,
        ..AdamParams::default()
    });
    let unfrozen = match args.task {
        Task::Infer | Task::TrainA => 0,
        Task::TrainB => 3,
        Task::TrainC => base_len,
    };
    clf.unfreeze_last(unfrozen);
    nn::profile::enable(args.profile.is_some());
    // Inference runs what `app predict` runs: the whole network compiled once (`Predictor`), f32 or
    // int8.
    let (predictor, int8) = match (&args.model, &args.calib, args.task) {
        (Some(m), _, Task::Infer) => {
            let plan = mobilenet::QuantizedPlan::load(m)?.0;
            (Some(mobilenet::Predictor::from_quantized(plan)), true)
        }
        (None, Some(dir), Task::Infer) if args.int8 => (Some(quantized(&mut clf, dir, s)?), true),
        (None, None, Task::Infer) if !args.int8 => (
            Some(mobilenet::Predictor::from_classifier(&mut clf)?),
            false,
        ),
        (None, None, _) if !args.int8 => (None, false),
        _ => bail!("--model and --int8 go with the infer task"),
    };
    let (t, iters) = match (args.task, &predictor) {
        (Task::Infer, Some(p)) => measure(&args, || {
            p.predict(&x)?;
            Ok(())
        })?,
        _ => measure(&args, || {
            clf.train_step(&x, &labels, &mut opt)?;
            Ok(())
        })?,
    };
    if let Some(p) = &args.profile {
        let table = nn::profile::markdown(&nn::profile::take(), iters);
        std::fs::write(p, table).with_context(|| format!("writing {}", p.display()))?;
    }
    let task = match int8 {
        true => "infer-int8".to_string(),
        false => format!("{:?}", args.task).to_lowercase(),
    };
    let out = serde_json::json!({
        "peer": "this",
        "task": task,
        "batch": n,
        "size": s,
        "iters": iters,
        "ms_per_batch": t.as_secs_f64() * 1e3,
        "images_per_s": n as f64 / t.as_secs_f64(),
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{out}");
    Ok(())
}
