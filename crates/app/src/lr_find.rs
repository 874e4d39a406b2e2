//! `lr-find`: fastai's learning-rate range test. The model trains for at most `--steps` batches with
//! a rate growing exponentially from `--start-lr` to `--end-lr`; the loss is smoothed (exponential
//! moving average, beta 0.98, debiased) and the test stops when it exceeds 4x its minimum. The
//! suggestion is the rate of steepest descent of the smoothed loss (fastai's `steep`), among the
//! points before the minimum; `lr_find.png` shows the curve. The model is not saved.

use crate::cli::LrFindArgs;
use crate::config::RunConfig;
use anyhow::{bail, Result};
use std::sync::atomic::AtomicBool;

/// Loss smoothing, as fastai.
const BETA: f64 = 0.98;

/// fastai's smoothing of the loss: a debiased exponential moving average, one loss at a time.
#[derive(Default)]
pub struct Smoother {
    avg: f64,
    seen: i32,
}

impl Smoother {
    pub fn push(&mut self, loss: f64) -> f64 {
        self.avg = BETA * self.avg + (1.0 - BETA) * loss;
        self.seen += 1;
        self.avg / (1.0 - BETA.powi(self.seen))
    }
}

/// The rate where the smoothed loss falls fastest: the most negative slope against ln lr over a
/// window of a twentieth of the points, among the points up to the minimum, after the first tenth
/// (where the smoothing has not settled); `None` when that leaves no window.
pub fn steepest(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len();
    let min_at = points
        .iter()
        .enumerate()
        .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))?
        .0;
    let (skip, w) = (n / 10, (n / 20).max(1));
    (skip..min_at.saturating_sub(w) + 1)
        .filter(|&i| i + w <= min_at)
        .map(|i| {
            let (a, b) = (points[i], points[i + w]);
            (a.0, (b.1 - a.1) / (b.0.ln() - a.0.ln()))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(lr, _)| lr)
}

pub fn run(args: LrFindArgs) -> Result<i32> {
    if !(args.start_lr > 0.0 && args.end_lr > args.start_lr) || args.steps < 3 {
        bail!("lr-find needs 0 < --start-lr < --end-lr and --steps >= 3");
    }
    let mut cfg = RunConfig::from_args(&args.train)?;
    if cfg.labels_csv.is_none() {
        crate::train::check_data_folder(&cfg.data)?;
    }
    let splits = crate::train::load_splits(&mut cfg, args.train.strict, false)?;
    let mut clf = crate::load::for_training(&mut cfg)?;
    let never = AtomicBool::new(false);
    let Ok(cache) = crate::train::build_caches(&mut clf, &splits, &cfg, true, &never)? else {
        bail!("interrupted while caching features");
    };
    let mut opt = crate::train::optimizer(&cfg)?;
    let train = &splits.train;
    let bs = cfg.batch_size;
    let mut points = Vec::with_capacity(args.steps);
    let mut smoother = Smoother::default();
    let mut best = f64::INFINITY;
    let ratio = (args.end_lr / args.start_lr) as f64;
    let mut stream = cache.is_none().then(|| train.batches(0, true, 0));
    let mut order = train.order(0);
    for i in 0..args.steps {
        let lr = args.start_lr as f64 * ratio.powf(i as f64 / (args.steps - 1) as f64);
        opt.set_lr(lr as f32);
        let b = i % train.num_batches();
        if b == 0 && i > 0 {
            order = train.order(i / train.num_batches());
            stream = cache
                .is_none()
                .then(|| train.batches(i / train.num_batches(), true, 0));
        }
        let idx = &order[b * bs..((b + 1) * bs).min(train.len())];
        let labels: Vec<usize> = idx.iter().map(|&j| train.labels[j]).collect();
        let step = match (&cache, stream.as_mut()) {
            (Some((c, _)), _) => clf.train_step_frozen(&c.get(idx), &labels, opt.as_mut()),
            (None, Some(s)) => match s.next() {
                Some(batch) => clf.train_step(&batch.x.into_shared(), &labels, opt.as_mut()),
                None => bail!("the batch loader stopped early"),
            },
            (None, None) => unreachable!("a stream exists when there is no cache"),
        };
        let loss = match step {
            Ok(o) => o.loss as f64,
            Err(mobilenet::Error::NonFinite { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        let smoothed = smoother.push(loss);
        points.push((lr, smoothed));
        best = best.min(smoothed);
        if smoothed > 4.0 * best {
            break;
        }
    }
    let suggestion = steepest(&points);
    crate::plots::lr_find(&args.plot, &points, suggestion)?;
    crate::outln!(
        "lr-find: {} steps from {:.1e} to {:.1e}; lowest smoothed loss {:.4} at lr {:.1e}",
        points.len(),
        args.start_lr,
        points.last().map_or(0.0, |p| p.0),
        best,
        points
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0.0, |p| p.0)
    );
    match suggestion {
        Some(lr) => crate::outln!(
            "Suggested lr: {lr:.1e} (steepest descent of the smoothed loss); plot: {}",
            args.plot.display()
        ),
        None => crate::outln!("No suggestion: too few steps before the loss diverged"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_debiased() {
        // A constant loss stays constant from the first step.
        let mut s = Smoother::default();
        assert!((0..5).all(|_| (s.push(2.0) - 2.0).abs() < 1e-12));
    }

    #[test]
    fn steepest_descent_before_the_minimum() {
        // Flat (with an early dip the smoothing would show), then a fall, then a rise.
        let mut pts: Vec<(f64, f64)> = (0..40)
            .map(|i| {
                let lr = 1e-6 * 10f64.powf(i as f64 / 6.0);
                let loss = match i {
                    1 => 1.0,
                    i if i < 20 => 2.0,
                    i if i < 30 => 2.0 - 0.15 * (i - 19) as f64,
                    i => 0.5 + 0.5 * (i - 29) as f64,
                };
                (lr, loss)
            })
            .collect();
        let got = steepest(&pts).unwrap();
        assert!(
            (got / 1e-6).log10() > 3.0 && (got / 1e-6).log10() < 5.0,
            "{got}"
        );
        pts.truncate(1);
        assert_eq!(steepest(&pts), None, "no window in one point");
    }
}
