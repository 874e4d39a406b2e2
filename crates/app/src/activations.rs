//! `activations`: each named layer's inference output (and `features`) as `.npy`.

use crate::cli::ActivationsArgs;
use anyhow::{Context, Result};
use mobilenet::MobileNetV2;
use ndarray_npy::{read_npy, write_npy};
use nn::Tensor;

pub fn run(a: ActivationsArgs) -> Result<i32> {
    let mut net = MobileNetV2::from_path(&a.weights, Some(false))
        .with_context(|| format!("loading weights {}", a.weights.display()))?;
    let x: Tensor = read_npy(&a.input)
        .with_context(|| format!("{}: not a float32 .npy array", a.input.display()))?;
    let layers = if a.layers.is_empty() {
        vec!["features".to_string()]
    } else {
        a.layers.clone()
    };
    let outs = net.activations(&x, &layers)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (name, t) in outs {
        if name != "features" && !layers.contains(&name) {
            continue;
        }
        let p = a.out.join(format!("{name}.npy"));
        write_npy(&p, &t).with_context(|| format!("writing {}", p.display()))?;
        crate::outln!("{name}: {:?} -> {}", t.shape(), p.display());
    }
    Ok(0)
}
