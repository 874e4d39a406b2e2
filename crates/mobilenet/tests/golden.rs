//! Parity with Keras, data-driven: every fixture directory under `../shared/golden` (or `$GOLDEN_DIR`)
//! and under this crate's `tests/golden` is checked exactly as its `manifest.json` describes. A
//! fixture this test cannot interpret fails.
//!
//! Besides `forward` and `train_step` (../shared/golden/README.md), this test reads one more kind,
//! written by `tests/golden/make_grad_cam.py` with keras.io's Grad-CAM recipe:
//!
//! kind `"grad_cam"` (schema 1 otherwise): `model` as for `forward` (`include_top: true` scores
//! with the top's logits), or with `head` `{"dense", "dropout", "classes", "init": {var: file}}`: the
//! base + GlobalAveragePooling2D + Dropout + Dense(dense, relu) + Dense(classes) logits, the head's
//! values from `init`. `pixels`: uint8 RGB NHWC `.npy` at the model's size; the input is
//! `preprocess` of it (`"mobilenet"`: x/127.5-1, `"unit"`: x/255, in float32). `last_conv_layer`:
//! the map explained (`out_relu`). Checks: `tensor: "logits"` `[N, classes]`; `tensor: "heatmap"`
//! with `target` `{"rank": k}` (the k-th most probable class, 0 = predicted) or `{"class": i}`,
//! `classes` (an int64 `.npy` of the class each image's map explains, which must match exactly) and
//! `file` `[N, h, w]`: ReLU(map . mean gradient of the logit over the map) / its maximum.

use mobilenet::{Classifier, HeadConfig, MobileNetV2, ModelConfig};
use ndarray_npy::read_npy;
use nn::optim::{Adam, AdamParams};
use nn::vars::VarStore;
use nn::Tensor;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn shared() -> PathBuf {
    std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn golden_dir() -> PathBuf {
    std::env::var_os("GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared().join("golden"))
}

fn load(path: &Path) -> Tensor {
    read_npy::<_, Tensor>(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares like numpy `allclose(ours, golden, rtol=rel, atol=abs)`, except that a NaN or infinity
/// on either side fails and shapes must be equal as they are (nothing is reshaped). Returns a
/// report line, or a failure naming the worst element (index, both values).
fn check(name: &str, ours: &Tensor, golden: &Tensor, abs: f64, rel: f64) -> Result<String, String> {
    if ours.shape() != golden.shape() {
        return Err(format!(
            "{name}: shape {:?}, golden {:?}  NOT OK",
            ours.shape(),
            golden.shape()
        ));
    }
    // (excess over the tolerance, flat index, ours, golden) of the worst element.
    let mut worst: Option<(f64, usize, f32, f32)> = None;
    let mut max_diff = 0.0f64;
    let mut bad = 0usize;
    for (i, (a, b)) in ours.iter().zip(golden).enumerate() {
        let d = (*a as f64 - *b as f64).abs();
        let excess = if a.is_finite() && b.is_finite() {
            d - (abs + rel * (*b as f64).abs())
        } else {
            f64::INFINITY
        };
        if d.is_finite() {
            max_diff = max_diff.max(d);
        }
        if excess > 0.0 {
            bad += 1;
        }
        if worst.is_none_or(|w| excess > w.0) {
            worst = Some((excess, i, *a, *b));
        }
    }
    let at = match worst {
        Some((_, i, a, b)) => {
            let index = unravel(i, golden.shape());
            format!("worst at {index:?}: {a:.7} vs golden {b:.7}")
        }
        None => "empty".into(),
    };
    let line = format!(
        "{name:<45} max|diff| {max_diff:.3e}  {at}  {}",
        if bad == 0 { "OK" } else { "NOT OK" }
    );
    if bad == 0 {
        Ok(line)
    } else {
        Err(format!(
            "{line} ({bad} of {} outside abs {abs:e} + rel {rel:e}, or not finite)",
            ours.len()
        ))
    }
}

/// The multi-index of flat (C-order) index `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        idx[d] = i % n.max(1);
        i /= n.max(1);
    }
    idx
}

#[test]
fn the_comparison_itself_can_fail() {
    let golden = Tensor::from_shape_vec(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert!(check("same", &golden, &golden, 0.0, 0.0).is_ok());
    let mut off = golden.clone();
    off[[1, 2]] = 6.5;
    let e = check("off", &off, &golden, 1e-3, 1e-3).unwrap_err();
    assert!(
        e.contains("worst at [1, 2]: 6.5000000 vs golden 6.0000000"),
        "{e}"
    );
    let mut nan = golden.clone();
    nan[[0, 1]] = f32::NAN;
    assert!(check("nan in golden", &golden, &nan, 1.0, 1.0).is_err());
    assert!(check("nan in ours", &nan, &golden, 1.0, 1.0).is_err());
    let flat = golden.clone().into_shape_with_order(vec![6]).unwrap();
    assert!(check("reshaped", &flat, &golden, 1.0, 1.0).is_err());
}

fn grad_cam_fixture(dir: &Path, manifest: &Value, lines: &mut Vec<Result<String, String>>) {
    use mobilenet::{GradCam, Target};
    assert_eq!(
        manifest["last_conv_layer"], "out_relu",
        "only out_relu is explained"
    );
    let net = base(manifest);
    let mut cam = match manifest.get("head") {
        None => GradCam::from_model(net).unwrap(),
        Some(head) => {
            let mut clf = Classifier::new(
                net,
                HeadConfig {
                    dense: head["dense"].as_u64().expect("head.dense") as usize,
                    dropout: head["dropout"].as_f64().expect("head.dropout") as f32,
                    classes: head["classes"].as_u64().expect("head.classes") as usize,
                    seed: 0,
                },
            )
            .unwrap();
            set_values(&mut clf, dir, &head["init"]);
            GradCam::from_classifier(clf).unwrap()
        }
    };
    let file = dir.join(manifest["pixels"].as_str().expect("pixels"));
    let pixels: ndarray::ArrayD<u8> =
        read_npy(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let pre = data_preprocess(manifest["preprocess"].as_str().expect("preprocess"));
    let x: Tensor = pixels.mapv(pre).into_shared();
    for c in manifest["checks"].as_array().expect("checks") {
        let (abs, rel) = tol(c);
        let golden = load(&dir.join(c["file"].as_str().expect("check.file")));
        match c["tensor"].as_str() {
            Some("logits") => {
                let e = cam.explain(&x, &[]).unwrap();
                // Softmax is shift-invariant: compare logits through the log-probabilities'
                // differences from the first class, as they are what the model's output fixes.
                let ours = log_odds(
                    &e.iter()
                        .map(|e| e.probabilities.clone())
                        .collect::<Vec<_>>(),
                );
                let theirs = log_odds_of_logits(&golden);
                lines.push(check(
                    "logits (log-odds vs class 0)",
                    &ours,
                    &theirs,
                    abs,
                    rel,
                ));
            }
            Some("heatmap") => {
                let t = &c["target"];
                let target = match (t.get("rank"), t.get("class")) {
                    (Some(k), None) => Target::Rank(k.as_u64().unwrap() as usize),
                    (None, Some(i)) => Target::Class(i.as_u64().unwrap() as usize),
                    _ => panic!("target {t}: rank or class"),
                };
                let e = cam.explain(&x, &[target]).unwrap();
                let want: ndarray::Array1<i64> =
                    read_npy(dir.join(c["classes"].as_str().expect("check.classes"))).unwrap();
                let got: Vec<i64> = e.iter().map(|e| e.maps[0].class as i64).collect();
                let name = format!("heatmap {t}");
                if got != want.to_vec() {
                    lines.push(Err(format!(
                        "{name}: classes {got:?}, golden {want:?}  NOT OK"
                    )));
                    continue;
                }
                let maps: Vec<_> = e.iter().map(|e| e.maps[0].heatmap.view()).collect();
                let ours = ndarray::stack(ndarray::Axis(0), &maps).unwrap();
                lines.push(check(
                    &name,
                    &ours.into_dyn().into_shared(),
                    &golden,
                    abs,
                    rel,
                ));
            }
            other => lines.push(Err(format!(
                "check {other:?} this test cannot interpret  NOT OK"
            ))),
        }
    }
}

fn data_preprocess(name: &str) -> fn(u8) -> f32 {
    match name {
        "mobilenet" => |v| v as f32 / 127.5 - 1.0,
        "unit" => |v| v as f32 / 255.0,
        other => panic!("preprocess {other:?}"),
    }
}

/// `log p_k - log p_0` per image, from probabilities.
fn log_odds(probs: &[Vec<f32>]) -> Tensor {
    let c = probs[0].len();
    let v: Vec<f32> = probs
        .iter()
        .flat_map(|p| p.iter().map(move |&q| (q as f64 / p[0] as f64).ln() as f32))
        .collect();
    Tensor::from_shape_vec(vec![probs.len(), c], v).unwrap()
}

/// `z_k - z_0` per image, from logits `[N, classes]`.
fn log_odds_of_logits(z: &Tensor) -> Tensor {
    let first = z.index_axis(ndarray::Axis(1), 0).to_owned();
    let d = z - &first.insert_axis(ndarray::Axis(1));
    d.into_shared()
}

/// Assigns `{var: file}` values to the classifier's variables of those names.
fn set_values(clf: &mut Classifier, dir: &Path, init: &Value) {
    for (var, file) in init.as_object().expect("init") {
        let v = load(&dir.join(file.as_str().unwrap()));
        let mut found = false;
        clf.net.graph.visit_params(&mut |p| {
            if &p.name == var {
                p.value.assign(&v);
                found = true;
            }
        });
        assert!(found, "init names {var}, which the model lacks");
    }
}

fn model_config(m: &Value) -> ModelConfig {
    let shape = &m["input_shape"];
    ModelConfig {
        alpha: m["alpha"].as_f64().expect("model.alpha") as f32,
        height: shape[0].as_u64().expect("input_shape") as usize,
        width: shape[1].as_u64().expect("input_shape") as usize,
        include_top: m["include_top"].as_bool().expect("model.include_top"),
    }
}

fn base(manifest: &Value) -> MobileNetV2 {
    let m = &manifest["model"];
    let dir = shared()
        .join("weights")
        .join(m["weights"].as_str().expect("model.weights"));
    let vs = VarStore::open(&dir).unwrap();
    MobileNetV2::load(vs, model_config(m)).unwrap()
}

fn tol(c: &Value) -> (f64, f64) {
    (
        c["abs"].as_f64().expect("check.abs"),
        c["rel"].as_f64().expect("check.rel"),
    )
}

fn forward_fixture(dir: &Path, manifest: &Value, lines: &mut Vec<Result<String, String>>) {
    let mut net = base(manifest);
    let x = load(&dir.join(manifest["input"].as_str().expect("input")));
    let checks = manifest["checks"].as_array().expect("checks");
    let mut layers = Vec::new();
    for c in checks {
        match c["tensor"].as_str() {
            Some("layer") => layers.push(c["layer"].as_str().expect("check.layer").to_string()),
            Some("features") => {}
            other => lines.push(Err(format!("unknown forward check tensor {other:?}"))),
        }
    }
    layers.push("features".into());
    let acts: BTreeMap<String, Tensor> =
        net.activations(&x, &layers).unwrap().into_iter().collect();
    for c in checks {
        let (abs, rel) = tol(c);
        let golden = load(&dir.join(c["file"].as_str().expect("check.file")));
        let key = if c["tensor"] == "layer" {
            c["layer"].as_str().unwrap().to_string()
        } else {
            "features".to_string()
        };
        lines.push(check(&key, &acts[&key], &golden, abs, rel));
        if key == "features" {
            // The product's path: batch-norm folded into the convolutions.
            let mut clf = Classifier::new(
                net_again(manifest),
                HeadConfig {
                    dense: 0,
                    dropout: 0.0,
                    classes: 2,
                    seed: 0,
                },
            )
            .unwrap();
            let cut = clf.cut();
            let frozen = clf.frozen(&x).unwrap();
            let feats = frozen.values().next().unwrap().clone();
            assert_eq!(frozen.len(), 1, "one boundary tensor before node {cut}");
            lines.push(check("features (folded path)", &feats, &golden, abs, rel));
        }
    }
}

fn net_again(manifest: &Value) -> MobileNetV2 {
    base(manifest)
}

fn train_step_fixture(dir: &Path, manifest: &Value, lines: &mut Vec<Result<String, String>>) {
    let head = manifest["head"].as_array().expect("head");
    assert_eq!(head.len(), 2, "head: Dense(relu) + Dense(softmax)");
    assert_eq!(head[0]["activation"], "relu");
    assert_eq!(head[1]["activation"], "softmax");
    let classes = head[1]["units"].as_u64().unwrap() as usize;
    let mut clf = Classifier::new(
        base(manifest),
        HeadConfig {
            dense: head[0]["units"].as_u64().unwrap() as usize,
            dropout: 0.0,
            classes,
            seed: 0,
        },
    )
    .unwrap();
    assert_eq!(head[0]["name"], "dense");
    assert_eq!(head[1]["name"], "dense_1");
    set_values(&mut clf, dir, &manifest["init"]);
    let n = manifest["unfreeze_last"].as_u64().expect("unfreeze_last") as usize;
    clf.unfreeze_last(n);
    let names = clf.net.graph.names();
    let base_len = clf.net.base_len();
    let unfrozen: Vec<&str> = manifest["unfrozen_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        &names[base_len - n..base_len],
        &unfrozen[..],
        "Keras's last {n} layers"
    );
    let mut trainable = Vec::new();
    clf.net.graph.visit_params(&mut |p| {
        if p.trainable {
            trainable.push(p.name.clone())
        }
    });
    let want: Vec<&str> = manifest["trainable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(trainable, want, "trainable variables in Keras order");
    assert_eq!(manifest["loss"], "categorical_crossentropy");
    let o = &manifest["optimizer"];
    assert_eq!(o["name"], "adam");
    let mut opt = Adam::new(AdamParams {
        lr: o["learning_rate"].as_f64().unwrap() as f32,
        beta_1: o["beta_1"].as_f64().unwrap() as f32,
        beta_2: o["beta_2"].as_f64().unwrap() as f32,
        epsilon: o["epsilon"].as_f64().unwrap() as f32,
    });
    let x = load(&dir.join(manifest["input"].as_str().unwrap()));
    let labels: Vec<usize> =
        read_npy::<_, ndarray::ArrayD<i64>>(dir.join(manifest["labels"].as_str().unwrap()))
            .unwrap()
            .iter()
            .map(|&v| v as usize)
            .collect();
    let steps = manifest["steps"].as_u64().expect("steps");
    let checks = manifest["checks"].as_array().expect("checks");
    let onehot_loss = |probs: &ndarray::Array2<f32>| -> f32 {
        labels
            .iter()
            .enumerate()
            .map(|(i, &l)| -(probs[[i, l]] as f64).ln())
            .sum::<f64>() as f32
            / labels.len() as f32
    };
    for (i, c) in checks.iter().enumerate() {
        if c["step"].as_u64().is_none_or(|k| k > steps) {
            lines.push(Err(format!(
                "check {i} ({}): step {} is not in 0..={steps}  NOT OK",
                c["tensor"], c["step"]
            )));
        }
    }
    let mut step_out = None;
    for k in 0..=steps {
        if k > 0 {
            step_out = Some(clf.train_step(&x, &labels, &mut opt).unwrap());
        }
        let infer = clf.predict(&x).unwrap();
        let mut params: BTreeMap<String, (Tensor, Tensor)> = BTreeMap::new();
        clf.net.graph.visit_params(&mut |p| {
            params.insert(p.name.clone(), (p.value.clone(), p.grad.clone()));
        });
        for c in checks.iter().filter(|c| c["step"].as_u64() == Some(k)) {
            let (abs, rel) = tol(c);
            let golden = load(&dir.join(c["file"].as_str().unwrap()));
            let t = c["tensor"].as_str().unwrap_or("?");
            let var = c["var"].as_str().unwrap_or("");
            let name = format!("step {k} {t} {var}");
            let so = step_out.as_ref();
            let ours: Option<Tensor> = match t {
                "probs_inference" => Some(infer.clone().into_dyn().into_shared()),
                "loss_inference" => Some(Tensor::from_elem(vec![], onehot_loss(&infer))),
                "grad" => params.get(var).map(|p| p.1.clone()),
                "weight" => params.get(var).map(|p| p.0.clone()),
                "moving_stat" => params.get(var).map(|p| p.0.clone()),
                "features_train" => so.map(|s| s.features.clone()),
                "hidden_train" => so.and_then(|s| s.hidden.clone()),
                "logits_train" => so.map(|s| s.logits.clone().into_dyn().into_shared()),
                "probs_train" => so.map(|s| s.probs.clone().into_dyn().into_shared()),
                "loss_train" => so.map(|s| Tensor::from_elem(vec![], s.loss)),
                _ => None,
            };
            match ours {
                Some(o) => lines.push(check(&name, &o, &golden, abs, rel)),
                None => lines.push(Err(format!(
                    "{name}: check this test cannot interpret  NOT OK"
                ))),
            }
        }
    }
}

#[test]
fn every_golden_fixture_matches_keras() {
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<PathBuf> = Vec::new();
    for root in [golden_dir(), own] {
        let mut here: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| {
                panic!("{}: {e} (the golden fixtures are required)", root.display())
            })
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        here.sort();
        assert!(!here.is_empty(), "no fixtures under {}", root.display());
        dirs.extend(here);
    }
    let mut failures = Vec::new();
    for dir in dirs {
        let text = std::fs::read_to_string(dir.join("manifest.json"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let manifest: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(manifest["schema"], 1, "{}: unknown schema", dir.display());
        let mut lines = Vec::new();
        match manifest["kind"].as_str() {
            Some("forward") => forward_fixture(&dir, &manifest, &mut lines),
            Some("train_step") => train_step_fixture(&dir, &manifest, &mut lines),
            Some("grad_cam") => grad_cam_fixture(&dir, &manifest, &mut lines),
            other => lines.push(Err(format!("unknown fixture kind {other:?}"))),
        }
        println!("== {}", dir.display());
        assert!(!lines.is_empty(), "{}: no checks", dir.display());
        for l in lines {
            match l {
                Ok(s) => println!("{s}"),
                Err(s) => {
                    println!("{s}");
                    failures.push(format!("{}: {s}", dir.display()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
