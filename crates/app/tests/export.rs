//! `app export --format onnx`: the written file, run by tract (a pure-Rust ONNX runtime), gives
//! the probabilities `app predict` gives on the same photos; the file is written atomically and
//! never replaced without --force; incomplete runs are named.

mod common;

use common::{run, s, shared, small_run, stderr};
use data::{decode_rgb, resize, DecodeLimits, Interpolation, Preprocess, Transform};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

const TOLERANCE: f32 = 1e-4;

fn photos() -> Vec<PathBuf> {
    [
        "archery/1",
        "bmx/2",
        "golf/3",
        "hockey/1",
        "swimming/2",
        "tennis/4",
    ]
    .iter()
    .map(|p| shared().join(format!("data/sports15/test/{p}.jpg")))
    .collect()
}

/// The photos as `app predict` sees them: decoded, resized, then scaled by `pre` (or left as RGB
/// 0..255 with `None`, for a model with the scaling inside).
fn batch(paths: &[PathBuf], size: usize, interp: Interpolation, pre: Option<Preprocess>) -> Tensor {
    let mut x = Vec::with_capacity(paths.len() * size * size * 3);
    for p in paths {
        let img = decode_rgb(p, DecodeLimits::default()).expect("test photo decodes");
        let img = resize(&img, size as u32, size as u32, interp);
        match pre {
            Some(pre) => {
                let mut out = vec![0.0f32; size * size * 3];
                Transform::IDENTITY.apply(&img, pre, &mut out);
                x.extend(out);
            }
            None => x.extend(img.as_raw().iter().map(|&v| v as f32)),
        }
    }
    tract_ndarray::Array4::from_shape_vec((paths.len(), size, size, 3), x)
        .unwrap()
        .into()
}

/// Probabilities `[photos][classes]` from the ONNX file, run by tract.
fn tract_probabilities(model: &Path, x: Tensor) -> Vec<Vec<f32>> {
    let plan = tract_onnx::onnx()
        .model_for_path(model)
        .expect("tract reads the exported file")
        .with_input_fact(0, f32::fact(x.shape()).into())
        .unwrap()
        .into_optimized()
        .unwrap_or_else(|e| panic!("tract optimises the exported graph: {e:?}"))
        .into_runnable()
        .unwrap();
    let out = plan.run(tvec!(x.into())).expect("tract runs the model");
    let p = out[0].to_plain_array_view::<f32>().unwrap();
    assert_eq!(p.ndim(), 2, "probabilities are [batch, classes]");
    p.outer_iter()
        .map(|r| r.iter().copied().collect())
        .collect()
}

/// Probabilities `[photos][classes]` printed by `app predict --format jsonl --top <all>`.
fn predict_probabilities(source: &[&str], photos: &[PathBuf], classes: usize) -> Vec<Vec<f32>> {
    let top = classes.to_string();
    let mut args = vec!["predict", "--format", "jsonl", "--quiet", "--top", &top];
    args.extend_from_slice(source);
    args.extend(photos.iter().map(|p| s(p)));
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            let mut p = vec![f32::NAN; classes];
            for t in row["top"].as_array().unwrap() {
                p[t["index"].as_u64().unwrap() as usize] =
                    t["probability"].as_f64().unwrap() as f32;
            }
            p
        })
        .collect()
}

/// Every probability within [`TOLERANCE`], the same top-1, and rows that sum to 1.
fn assert_same(onnx: &[Vec<f32>], ours: &[Vec<f32>]) {
    assert_eq!(onnx.len(), ours.len());
    let argmax = |r: &[f32]| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
    for (i, (a, b)) in onnx.iter().zip(ours).enumerate() {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= TOLERANCE,
            "photo {i}: max |onnx - predict| = {worst}"
        );
        assert_eq!(argmax(a), argmax(b), "photo {i}: top-1 differs");
        let sum: f32 = a.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-4,
            "photo {i}: probabilities sum to {sum}"
        );
    }
}

fn export(args: &[&str]) -> std::process::Output {
    let mut all = vec!["export", "--format", "onnx"];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn a_trained_run_exported_runs_in_tract_as_predict_scores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    // A preprocessing and interpolation other than the defaults, to see both carried over.
    let t = small_run(&run_dir, &["--preset", "study-finetune"]);
    assert!(t.status.success(), "{}", stderr(&t));
    let photos = photos();
    let classes = 15;
    for (flags, best) in [
        (vec![], false),
        (vec!["--include-preprocessing"], false),
        (vec!["--keep-batchnorm", "--best"], true),
    ] {
        let model = tmp
            .path()
            .join(format!("m{}.onnx", flags.len() + best as usize));
        let mut args = vec!["--checkpoint", s(&run_dir), "--out", s(&model)];
        args.extend_from_slice(&flags);
        let out = export(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("opset 17"), "{stdout}");
        let pre = (!flags.contains(&"--include-preprocessing")).then_some(Preprocess::Unit);
        let x = batch(&photos, 224, Interpolation::Nearest, pre);
        let onnx = tract_probabilities(&model, x);
        let mut source = vec!["--checkpoint", s(&run_dir)];
        if best {
            source.push("--best");
        }
        let ours = predict_probabilities(&source, &photos, classes);
        assert_same(&onnx, &ours);
    }
}

#[test]
fn imagenet_weights_exported_run_in_tract_as_predict_scores_them() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = shared().join("weights/mobilenet_v2_1.0_224");
    let model = tmp.path().join("imagenet.onnx");
    let out = export(&[
        "--weights",
        s(&weights),
        "--include-preprocessing",
        "--out",
        s(&model),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let photos: Vec<PathBuf> = ["grace_hopper.bmp", "hot_dog.jpg"]
        .iter()
        .map(|f| shared().join("weights/test_images").join(f))
        .collect();
    let onnx = tract_probabilities(&model, batch(&photos, 224, Interpolation::Bilinear, None));
    let ours = predict_probabilities(&["--weights", s(&weights)], &photos, 1000);
    assert_same(&onnx, &ours);
}

#[test]
fn an_existing_file_is_replaced_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = shared().join("weights/mobilenet_v2_1.0_224");
    let model = tmp.path().join("models/m.onnx");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    std::fs::write(&model, b"the user's earlier model").unwrap();

    let refused = export(&["--weights", s(&weights), "--out", s(&model)]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert_eq!(std::fs::read(&model).unwrap(), b"the user's earlier model");

    let forced = export(&["--weights", s(&weights), "--out", s(&model), "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let bytes = std::fs::read(&model).unwrap();
    assert!(bytes.len() > 1_000_000, "a whole model was written");
    // Nothing but the model is left in the folder (no temporary file).
    let names: Vec<_> = std::fs::read_dir(model.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.onnx")]);

    let folder = export(&["--weights", s(&weights), "--out", s(tmp.path())]);
    assert_eq!(folder.status.code(), Some(2));
    assert!(stderr(&folder).contains("a folder"), "{}", stderr(&folder));
}

#[test]
fn incomplete_runs_and_wrong_sources_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.onnx");

    let empty = tmp.path().join("empty_run");
    std::fs::create_dir(&empty).unwrap();
    let r = export(&["--checkpoint", s(&empty), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("config.json"), "{}", stderr(&r));

    // A run whose configuration was written but no checkpoint yet (stopped in its first epoch).
    let run_dir = tmp.path().join("run");
    let t = small_run(&run_dir, &[]);
    assert!(t.status.success(), "{}", stderr(&t));
    std::fs::remove_file(run_dir.join("last.npz")).unwrap();
    let r = export(&["--checkpoint", s(&run_dir), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("last.npz"), "{}", stderr(&r));

    let no_top = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let r = export(&["--weights", s(&no_top), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("top"), "{}", stderr(&r));
    assert!(!out.exists(), "nothing is written on an error");
}
