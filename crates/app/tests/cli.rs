//! The binary as a user runs it, on the real data and weights in `../shared`.

mod common;

use common::{app, run, s, shared, small_run};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn imagenet_top1_matches_keras_on_the_test_photos() {
    let imgs = shared().join("weights/test_images");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(imgs.join("expected.json")).unwrap())
            .unwrap();
    let files: Vec<PathBuf> = expected
        .as_object()
        .unwrap()
        .keys()
        .map(|k| imgs.join(k))
        .collect();
    let weights = shared().join("weights/mobilenet_v2_1.0_224");
    let mut args = vec![
        "predict",
        "--weights",
        s(&weights),
        "--top",
        "5",
        "--profile",
    ];
    args.extend(files.iter().map(|f| s(f)));
    let out = run(&args);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // --profile: one row per step of the folded plan, first to last, each with a time: the stem
    // with its batch-norm and ReLU6, the 17 inverted-residual blocks, Conv_1, pooling, predictions.
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(
        rows.get(1).map(|r| r.starts_with("| Conv1..Conv1_relu | ")),
        Some(true),
        "{stdout}"
    );
    assert!(
        rows.last().unwrap().starts_with("| predictions | "),
        "{stdout}"
    );
    assert_eq!(rows.len(), 1 + 1 + 17 + 3, "{stdout}");
    for (name, e) in expected.as_object().unwrap() {
        let line = stdout
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("no line for {name}"));
        let top1 = line.split(": ").nth(1).unwrap().split(' ').next().unwrap();
        assert_eq!(top1, e["top1_label"].as_str().unwrap(), "{line}");
        assert_eq!(line.matches(", ").count(), 4, "top 5: {line}");
    }
}

#[test]
fn short_real_run_learns_and_eval_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let data = shared().join("data/sports15");
    let weights = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let out = run(&[
        "train",
        "--data",
        s(&data),
        "--weights",
        s(&weights),
        "--alpha",
        "0.35",
        "--epochs",
        "4",
        "--out",
        s(&run_dir),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("Feature cache: augmentation is off"), "{t}");
    assert!(t.contains("Epoch 4/4 - "), "{t}");
    for f in [
        "config.json",
        "best.npz",
        "last.npz",
        "history.csv",
        "history.json",
        "history.png",
        "report.html",
        "eval_test.json",
        "confusion_test.png",
    ] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("eval_test.json")).unwrap())
            .unwrap();
    let acc = report["accuracy"].as_f64().unwrap();
    assert!(acc > 0.6, "test accuracy {acc} (chance is 0.067)");
    let history = std::fs::read_to_string(run_dir.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 5);

    let ev = run(&["eval", "--checkpoint", s(&run_dir), "--json"]);
    assert!(ev.status.success());
    let j: Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert_eq!(j["total"], 75);
    assert_eq!(
        j["accuracy"].as_f64().unwrap(),
        acc,
        "eval of last.npz equals the end-of-training test score"
    );
    let plain = run(&["eval", "--checkpoint", s(&run_dir), "--split", "valid"]);
    let valid_line = text(&plain)
        .lines()
        .find(|l| l.starts_with("Correct predictions: "))
        .map(str::to_string);
    assert!(
        valid_line
            .as_deref()
            .is_some_and(|l| l.ends_with(" out of 75")),
        "{valid_line:?}"
    );

    let img = data.join("test/archery/1.jpg");
    let p = run(&[
        "predict",
        "--checkpoint",
        s(&run_dir),
        "--top",
        "3",
        s(&img),
    ]);
    assert!(p.status.success());
    assert_eq!(String::from_utf8_lossy(&p.stdout).matches(", ").count(), 2);
}

#[test]
fn interrupted_run_resumes_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("straight"), dir.path().join("interrupted"));
    assert!(small_run(&a, &[]).status.success());
    let stopped = small_run(&b, &["--interrupt-after", "2"]);
    assert_eq!(stopped.status.code(), Some(130));
    let t = text(&stopped);
    // The binary as invoked and the run folder's absolute path.
    let want = format!(
        "Resume with: {} train --resume {}",
        env!("CARGO_BIN_EXE_app"),
        b.canonicalize().unwrap().display()
    );
    assert!(t.contains(&want), "{t}");
    assert!(t.contains("Interrupted after batch 2 of "), "{t}");
    let resumed = run(&["train", "--resume", s(&b), "--quiet"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    // Interrupted after batch 2: resumed at batch 3, the same count.
    assert!(
        text(&resumed).contains(", batch 3 of "),
        "{}",
        text(&resumed)
    );
    let ta = nn::checkpoint::load_npz(&a.join("last.npz")).unwrap();
    let tb = nn::checkpoint::load_npz(&b.join("last.npz")).unwrap();
    assert_eq!(ta.len(), tb.len());
    for (k, v) in &ta {
        assert_eq!(v, &tb[k], "{k} differs after resume");
    }
    let ha = std::fs::read_to_string(a.join("history.json")).unwrap();
    let hb = std::fs::read_to_string(b.join("history.json")).unwrap();
    let strip = |h: &str| -> Vec<Value> {
        let mut v: Vec<Value> = serde_json::from_str(h).unwrap();
        v.iter_mut().for_each(|r| {
            r.as_object_mut()
                .unwrap()
                .remove("seconds")
                .map(|_| ())
                .unwrap_or(())
        });
        v
    };
    assert_eq!(strip(&ha), strip(&hb), "same losses and accuracies");
}

#[test]
fn ctrl_c_saves_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = shared().join("data/sports15");
    let weights = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let mut child = app()
        .args([
            "train",
            "--data",
            s(&data),
            "--weights",
            s(&weights),
            "--limit-per-class",
            "3",
            "--batch-size",
            "8",
            "--epochs",
            "200",
            "--unfreeze",
            "3",
            "--augment",
            "20,0.2,0.2,0.2,1",
            "--quiet",
            "--out",
            s(dir.path()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    use std::io::BufRead;
    while stdout.read_line(&mut line).unwrap() > 0 {
        seen += &line;
        if line.starts_with("Epoch 2/") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("Epoch 2/200"), "{seen}");
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let want = format!(
        "Resume with: {} train --resume {}",
        env!("CARGO_BIN_EXE_app"),
        dir.path().canonicalize().unwrap().display()
    );
    assert!(rest.contains(&want), "{rest}");
    assert!(dir.path().join("last.npz").is_file() && dir.path().join("trainer.json").is_file());
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn nan_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = shared().join("data/sports15");
    let weights = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let out = run(&[
        "train",
        "--data",
        s(&data),
        "--weights",
        s(&weights),
        "--limit-per-class",
        "10",
        "--epochs",
        "3",
        "--lr",
        "1e30",
        "--quiet",
        "--out",
        s(dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("error: the loss became") && t.contains("training stopped"),
        "{t}"
    );
    assert!(t.contains("Try a lower --lr"), "{t}");
}

#[test]
fn missing_default_data_names_xtask_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let out = app().arg("train").current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("data/sports: data folder not found. Run `cargo xtask fetch`"),
        "{t}"
    );
}

#[test]
fn bad_weights_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    std::fs::create_dir_all(w.join("Conv1")).unwrap();
    std::fs::write(w.join("Conv1/kernel.npy"), b"not npy").unwrap();
    let data = shared().join("data/sports15");
    let out = run(&[
        "train",
        "--data",
        s(&data),
        "--weights",
        s(&w),
        "--limit-per-class",
        "1",
        "--quiet",
        "--out",
        s(&dir.path().join("r")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("kernel.npy: not a float32 .npy array"), "{t}");
}

#[test]
fn activations_dump_matches_keras_layer_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let golden = shared().join("golden/forward_a035_224");
    let weights = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let out = run(&[
        "activations",
        "--weights",
        s(&weights),
        "--input",
        s(&golden.join("input.npy")),
        "--layers",
        "block_2_add,features",
        "--out",
        s(dir.path()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for (ours, theirs) in [
        ("block_2_add.npy", "layer_block_2_add.npy"),
        ("features.npy", "features.npy"),
    ] {
        let a: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.path().join(ours)).unwrap();
        let b: ndarray::ArrayD<f32> = ndarray_npy::read_npy(golden.join(theirs)).unwrap();
        assert_eq!(a.shape(), b.shape());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 5e-4, "{ours}: max diff {worst}");
    }
}

#[test]
fn nan_weights_are_refused_naming_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    let src = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let dst = d.path().join("weights");
    for layer in std::fs::read_dir(&src).unwrap() {
        let layer = layer.unwrap().path();
        let to = dst.join(layer.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&layer).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let k = dst.join("Conv_1/kernel.npy");
    let mut a: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&k).unwrap();
    a.fill(f32::NAN);
    ndarray_npy::write_npy(&k, &a).unwrap();
    let out = run(&[
        "train",
        "--data",
        s(&shared().join("data/sports15")),
        "--weights",
        s(&dst),
        "--epochs",
        "1",
        "--out",
        s(&d.path().join("run")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("Conv_1/kernel: 143360 NaN"), "{t}");
    assert!(!d.path().join("run/last.npz").exists());
}
