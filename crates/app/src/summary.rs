//! `summary`: Keras's `model.summary()` for ImageNet weights or a run: each layer's name, type,
//! output shape, parameters and whether it trains, then the totals, so a user sees where
//! `--unfreeze N` cuts. `train` prints a shortened one.

use crate::cli::SummaryArgs;
use anyhow::{bail, Result};
use mobilenet::{summarize, LayerSummary, MobileNetV2};
use std::fmt::Write;

/// Rows kept at each end of the shortened table, around the trainable layers.
const CONTEXT: usize = 3;

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn row(out: &mut String, name: &str, kind: &str, shape: &str, params: usize, trains: &str) {
    let _ = writeln!(
        out,
        "{:<56} {:<22} {:>11}  {}",
        format!("{name} ({kind})"),
        shape,
        thousands(params),
        trains
    );
}

/// The table: every row, or (`full == false`) the first rows, the trainable layers with a few
/// frozen ones before them, and the totals. `trainable` are the layers that train (Keras's
/// `layer.trainable`), which decides the mark of layers without parameters.
pub fn table(
    title: &str,
    input: (usize, usize),
    rows: &[LayerSummary],
    trainable: std::ops::Range<usize>,
    full: bool,
) -> String {
    let mut out = format!("Model: {title}\n");
    let _ = writeln!(
        out,
        "{:<56} {:<22} {:>11}  Trainable",
        "Layer (type)", "Output Shape", "Param #"
    );
    out.push_str(&"-".repeat(102));
    out.push('\n');
    row(
        &mut out,
        "input",
        "InputLayer",
        &format!("(None, {}, {}, 3)", input.0, input.1),
        0,
        "",
    );
    let first_trainable = rows
        .iter()
        .position(|r| r.trainable_params > 0)
        .unwrap_or(rows.len());
    let from = first_trainable.saturating_sub(CONTEXT);
    for (i, r) in rows.iter().enumerate() {
        if !full && i == CONTEXT && from > CONTEXT {
            let _ = writeln!(out, "... {} frozen layers ...", from - CONTEXT);
        }
        if !full && i >= CONTEXT && i < from {
            continue;
        }
        let shape = format!(
            "(None, {})",
            r.output_shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // A layer without parameters trains when it lies in the trainable part (`--unfreeze 3`
        // makes out_relu one of the three).
        let trains = match (r.params, r.trainable_params) {
            (0, _) if trainable.contains(&i) => "Y",
            (_, 0) => "N",
            (0, _) => "N",
            _ => "Y",
        };
        row(&mut out, &r.name, r.kind, &shape, r.params, trains);
    }
    let total: usize = rows.iter().map(|r| r.params).sum();
    let trainable: usize = rows.iter().map(|r| r.trainable_params).sum();
    out.push_str(&"=".repeat(102));
    let _ = write!(
        out,
        "\nTotal params: {} ({:.2} MB)\nTrainable params: {}\nNon-trainable params: {}\n",
        thousands(total),
        total as f64 * 4.0 / (1 << 20) as f64,
        thousands(trainable),
        thousands(total - trainable)
    );
    out
}

/// The summary of a run's classifier (or a model being trained).
pub fn of_classifier(clf: &mut mobilenet::Classifier, alpha: f32, full: bool) -> Result<String> {
    let (h, w) = (clf.net.config.height, clf.net.config.width);
    let rows = summarize(&mut clf.net.graph, h, w)?;
    let title = format!(
        "MobileNetV2 alpha {alpha} at {h}x{w} + head ({} classes)",
        clf.head.classes
    );
    let base = clf.net.base_len();
    let first = rows
        .iter()
        .position(|r| r.trainable_params > 0)
        .unwrap_or(base)
        .min(base);
    Ok(table(&title, (h, w), &rows, first..rows.len(), full))
}

/// ImageNet weights with their last `unfreeze` base layers trainable (the top, if any, frozen).
fn of_weights(net: &mut MobileNetV2, unfreeze: usize, full: bool) -> Result<String> {
    let base = net.base_len();
    let all = net.graph.len();
    net.graph.set_trainable(0..all, false);
    net.unfreeze_last(unfreeze);
    let (h, w) = (net.config.height, net.config.width);
    let rows = summarize(&mut net.graph, h, w)?;
    let title = format!(
        "MobileNetV2 alpha {} at {h}x{w}{}",
        net.config.alpha,
        if net.classes.is_some() {
            " with the ImageNet top"
        } else {
            " (no top)"
        }
    );
    Ok(table(&title, (h, w), &rows, base - unfreeze..base, full))
}

pub fn run(args: SummaryArgs) -> Result<i32> {
    let text = match (&args.checkpoint, &args.weights) {
        (Some(dir), None) => {
            let (cfg, mut clf) = crate::load::from_run(dir, false)?;
            if let Some(n) = args.unfreeze {
                check_unfreeze(n, clf.net.base_len())?;
                clf.unfreeze_last(n);
            }
            of_classifier(&mut clf, cfg.alpha, !args.short)?
        }
        (None, Some(dir)) => {
            let mut net = crate::load::open_weights(dir, None)?;
            let base = net.base_len();
            let n = args.unfreeze.unwrap_or(0);
            check_unfreeze(n, base)?;
            of_weights(&mut net, n, !args.short)?
        }
        _ => bail!("summary needs --checkpoint RUN_DIR or --weights DIR"),
    };
    crate::outln!("{}", text.trim_end());
    Ok(0)
}

fn check_unfreeze(n: usize, base: usize) -> Result<()> {
    if n > base {
        bail!("--unfreeze {n}: the base has only {base} layers (Keras counting)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<LayerSummary> {
        (0..10)
            .map(|i| LayerSummary {
                name: format!("layer_{i}"),
                kind: "Conv2D",
                output_shape: vec![7, 7, 8],
                params: 1000 * i,
                trainable_params: if i >= 8 { 1000 * i } else { 0 },
            })
            .collect()
    }

    #[test]
    fn totals_and_the_shortened_table() {
        let full = table("t", (224, 224), &rows(), 8..10, true);
        assert!(full.contains("Total params: 45,000 (0.17 MB)"), "{full}");
        assert!(full.contains("Trainable params: 17,000"));
        assert!(full.contains("Non-trainable params: 28,000"));
        assert!(full.contains("layer_4 (Conv2D)"));
        let short = table("t", (224, 224), &rows(), 8..10, false);
        assert!(short.contains("... 2 frozen layers ..."), "{short}");
        assert!(!short.contains("layer_4 (Conv2D)") && short.contains("layer_5 (Conv2D)"));
        assert!(short.contains("Total params: 45,000"));
        let y = short.lines().filter(|l| l.ends_with(" Y")).count();
        assert_eq!(y, 2, "{short}");
        assert!(
            short.contains("layer_0 (Conv2D)") && short.lines().nth(4).unwrap().ends_with(" N")
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(3_538_984), "3,538,984");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }
}
