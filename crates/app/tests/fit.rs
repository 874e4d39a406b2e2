//! The fit loop's callbacks, end to end on real photos: early stopping by Keras's rule (and the
//! best weights restored), ReduceLROnPlateau's rate by the plateau rule, warm-up then cosine, a
//! bit-identical resume with their state, and balanced class weights on an imbalanced subset.

mod common;

use common::{run, s, shared, stderr, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `train` with the frozen base and its feature cache (seconds), alpha 0.35.
fn quick_train(data: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    let weights = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let mut args = vec![
        "train",
        "--data",
        s(data),
        "--weights",
        s(&weights),
        "--batch-size",
        "16",
        "--seed",
        "3",
        "--quiet",
        "--out",
        s(dir),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// [`quick_train`], which must succeed.
fn quick_run(data: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    let out = quick_train(data, dir, extra);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

/// [`quick_train`] on sports15 interrupted after `after` batches (exit 130), then `--resume`d.
fn interrupted_then_resumed(dir: &Path, flags: &[&str], after: &str) {
    let mut stopped = flags.to_vec();
    stopped.extend(["--interrupt-after", after]);
    let r = quick_train(&sports(), dir, &stopped);
    assert_eq!(r.status.code(), Some(130), "{}", stderr(&r));
    let r = run(&["train", "--resume", s(dir), "--quiet"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
}

fn sports() -> PathBuf {
    shared().join("data/sports15")
}

fn history(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("history.json")).unwrap();
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

fn column(h: &[Value], key: &str) -> Vec<f64> {
    h.iter().map(|r| r[key].as_f64().unwrap()).collect()
}

/// The model's tensors of a checkpoint (the optimizer's state left out).
fn model_tensors(path: &Path) -> Vec<(String, nn::Tensor)> {
    let mut t: Vec<_> = nn::checkpoint::load_npz(path)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("optimizer/"))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn early_stopping_stops_by_the_keras_rule_and_restores_the_best_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = quick_run(
        &sports(),
        &dir,
        &[
            "--limit-per-class",
            "6",
            "--epochs",
            "15",
            "--lr",
            "3e-2",
            "--early-stopping",
            "2",
            "--restore-best-weights",
        ],
    );
    let h = history(&dir);
    let val = column(&h, "val_loss");
    let n = val.len();
    assert!(
        n < 15,
        "a lr of 3e-2 on 90 photos overfits within 15 epochs: {val:?}"
    );
    // Keras: stop at the first epoch that is `patience` epochs past the best so far.
    let mut best = (f64::INFINITY, 0);
    for (i, &v) in val.iter().enumerate() {
        if v < best.0 {
            best = (v, i + 1);
        }
        let stop_here = i + 1 - best.1 >= 2;
        assert_eq!(stop_here, i + 1 == n, "epoch {}: {val:?}", i + 1);
    }
    let text = stdout(&out);
    assert!(
        text.contains(&format!("early stopping after epoch {n}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Restored the weights of epoch {}", best.1)),
        "{text}"
    );
    assert_eq!(
        model_tensors(&dir.join("last.npz")),
        model_tensors(&dir.join("best.npz")),
        "last.npz holds the best epoch's weights"
    );
}

#[test]
fn reduce_lr_on_plateau_follows_the_plateau_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    quick_run(
        &sports(),
        &dir,
        &[
            "--limit-per-class",
            "6",
            "--epochs",
            "8",
            "--lr",
            "3e-2",
            "--reduce-lr-on-plateau",
            "0.5,1",
        ],
    );
    let h = history(&dir);
    let (val, lr) = (column(&h, "val_loss"), column(&h, "lr"));
    let mut want = vec![3e-2f32];
    let mut best = f64::INFINITY;
    for &v in &val[..val.len() - 1] {
        let mut next = *want.last().unwrap();
        if v < best - 1e-4 {
            best = v;
        } else {
            next *= 0.5;
        }
        want.push(next);
    }
    let got: Vec<f32> = lr.iter().map(|&l| l as f32).collect();
    assert_eq!(got, want, "val_loss {val:?}");
    assert!(want.iter().any(|&l| l < 3e-2), "no plateau in {val:?}");
}

#[test]
fn warmup_then_cosine_sets_the_rate_of_each_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    quick_run(
        &sports(),
        &dir,
        &[
            "--limit-per-class",
            "3",
            "--epochs",
            "3",
            "--lr",
            "1e-2",
            "--warmup-epochs",
            "1",
            "--schedule",
            "cosine",
        ],
    );
    let lr = column(&history(&dir), "lr");
    // The rate of each epoch's last batch: the end of the warm-up, then cosine over 2 epochs.
    for (got, want) in lr.iter().zip([1e-2, 1e-2, 5e-3]) {
        assert!((got - want).abs() < 1e-7, "{lr:?}");
    }
}

#[test]
fn a_run_with_callbacks_resumes_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let flags = [
        "--limit-per-class",
        "6",
        "--epochs",
        "5",
        "--lr",
        "3e-2",
        "--reduce-lr-on-plateau",
        "0.5,1",
        "--early-stopping",
        "3",
    ];
    let (a, b) = (tmp.path().join("straight"), tmp.path().join("interrupted"));
    quick_run(&sports(), &a, &flags);
    // 90 photos in batches of 16: 6 a epoch; stop inside epoch 3.
    interrupted_then_resumed(&b, &flags, "14");
    assert_eq!(
        model_tensors(&a.join("last.npz")),
        model_tensors(&b.join("last.npz"))
    );
    let strip = |h: Vec<Value>| -> Vec<(f64, f64)> {
        h.iter()
            .map(|r| (r["lr"].as_f64().unwrap(), r["val_loss"].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(strip(history(&a)), strip(history(&b)));
    let state = |d: &Path| -> Value {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("trainer.json")).unwrap())
                .unwrap();
        v["callbacks"].clone()
    };
    assert_eq!(state(&a), state(&b));
    assert!(state(&a)["reduce_lr_on_plateau"].is_object());
}

/// Four sports classes, `rare` with `keep` training photos and the others ten times as many; the
/// rare class's test split also gets 60 of its unused training photos, so its recall is measured
/// on 65 photos.
fn imbalanced(to: &Path, rare: &str, keep: usize) -> PathBuf {
    let data = to.join("imbalanced");
    let sorted = |dir: PathBuf| {
        let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        f.sort();
        f
    };
    for class in ["basketball", "bowling", "golf", rare] {
        let train = sorted(sports().join("train").join(class));
        let n = if class == rare { keep } else { 10 * keep };
        let mut test = sorted(sports().join("test").join(class));
        if class == rare {
            test.extend(train[n..(n + 60).min(train.len())].iter().cloned());
        }
        let valid = sorted(sports().join("valid").join(class));
        for (split, files) in [
            ("train", &train[..n]),
            ("valid", &valid[..]),
            ("test", &test[..]),
        ] {
            let dst = data.join(split).join(class);
            std::fs::create_dir_all(&dst).unwrap();
            for (i, f) in files.iter().enumerate() {
                let name = format!("{i:03}_{}", f.file_name().unwrap().to_string_lossy());
                std::os::unix::fs::symlink(f, dst.join(name)).unwrap();
            }
        }
    }
    data
}

/// The run's recall of `class` on the test split.
fn test_recall(dir: &Path, class: &str) -> f64 {
    let r = run(&["eval", "--checkpoint", s(dir), "--split", "test", "--json"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let v: Value = serde_json::from_str(&stdout(&r)).unwrap();
    let m = v["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["class"] == class)
        .unwrap()
        .clone();
    m["recall"].as_f64().unwrap()
}

#[test]
fn balanced_class_weights_lift_the_recall_of_a_rare_class() {
    let tmp = tempfile::tempdir().unwrap();
    let rare = "tennis";
    let data = imbalanced(tmp.path(), rare, 8);
    let flags = ["--epochs", "4", "--lr", "1e-3"];
    let (plain, weighted) = (tmp.path().join("plain"), tmp.path().join("weighted"));
    quick_run(&data, &plain, &flags);
    let mut w = flags.to_vec();
    w.extend(["--class-weight", "balanced"]);
    let out = quick_run(&data, &weighted, &w);
    // 248 photos, 4 classes: 248 / (4 * 8) for the rare one, 248 / (4 * 80) for the others.
    assert!(stdout(&out).contains("tennis 7.750"), "{}", stdout(&out));
    assert!(stdout(&out).contains("golf 0.775"), "{}", stdout(&out));
    let (p, q) = (test_recall(&plain, rare), test_recall(&weighted, rare));
    eprintln!("rare-class recall on 65 test photos: {p:.2} without weights, {q:.2} with");
    assert!(
        q >= p + 0.15,
        "rare-class recall: {p:.2} without weights, {q:.2} with"
    );
}

/// `--validation-split`: a data folder with train/ only; the validation images come from it by
/// the seed, and `eval --split valid` finds the same ones (its loss is the last epoch's val_loss).
#[test]
fn validation_split_takes_the_same_images_in_train_and_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("only_train");
    for class in ["archery", "boxing", "golf"] {
        let dst = data.join("train").join(class);
        std::fs::create_dir_all(&dst).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(sports().join("train").join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in &files[..10] {
            std::os::unix::fs::symlink(f, dst.join(f.file_name().unwrap())).unwrap();
        }
    }
    let dir = tmp.path().join("run");
    let r = run(&[
        "train",
        "--data",
        s(&data),
        "--weights",
        s(&shared().join("weights/mobilenet_v2_0.35_224_no_top")),
        "--epochs",
        "2",
        "--validation-split",
        "0.2",
        "--seed",
        "5",
        "--out",
        s(&dir),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert!(
        stdout(&r).contains("24 train, 6 valid, 0 test images"),
        "{}",
        stdout(&r)
    );
    let val_loss = *column(&history(&dir), "val_loss").last().unwrap();
    let e = run(&[
        "eval",
        "--checkpoint",
        s(&dir),
        "--split",
        "valid",
        "--json",
    ]);
    assert_eq!(e.status.code(), Some(0), "{}", stderr(&e));
    let v: Value = serde_json::from_str(&stdout(&e)).unwrap();
    assert_eq!(v["total"], 6);
    assert!(
        (v["loss"].as_f64().unwrap() - val_loss).abs() < 1e-4,
        "{} vs {val_loss}",
        v["loss"]
    );

    let r = run(&[
        "train",
        "--data",
        s(&data),
        "--validation-split",
        "1.5",
        "--out",
        s(&tmp.path().join("x")),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        stderr(&r).contains("--validation-split must be a fraction"),
        "{}",
        stderr(&r)
    );
}

/// `--frozen-epochs` (the `finetune` preset's two phases): the base is frozen, then the last
/// `--unfreeze` layers train at `--finetune-lr` with a new optimizer; a run interrupted in the
/// second phase resumes bit-identical.
#[test]
fn two_phases_freeze_then_fine_tune_and_resume_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let flags = [
        "--limit-per-class",
        "6",
        "--epochs",
        "3",
        "--lr",
        "1e-3",
        "--frozen-epochs",
        "1",
        "--unfreeze",
        "3",
        "--finetune-lr",
        "1e-4",
    ];
    let (a, b) = (tmp.path().join("straight"), tmp.path().join("interrupted"));
    let out = quick_run(&sports(), &a, &flags);
    assert!(stdout(&out)
        .contains("Fine-tuning from epoch 2: the last 3 base layers trainable, lr 0.0001"));
    let lr: Vec<f32> = column(&history(&a), "lr")
        .iter()
        .map(|&l| l as f32)
        .collect();
    assert_eq!(lr, [1e-3, 1e-4, 1e-4]);
    let imagenet = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let original: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(imagenet.join("Conv_1").join("kernel.npy")).unwrap();
    let trained = nn::checkpoint::load_npz(&a.join("last.npz")).unwrap();
    let conv1 = &trained["Conv_1/kernel"];
    assert_ne!(
        conv1.as_slice().unwrap(),
        original.as_slice().unwrap(),
        "phase 2 trains Conv_1"
    );
    let block16 = &trained["block_16_project/kernel"];
    let kept: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(imagenet.join("block_16_project").join("kernel.npy")).unwrap();
    assert_eq!(
        block16.as_slice().unwrap(),
        kept.as_slice().unwrap(),
        "below the cut stays"
    );

    // 6 batches an epoch: stop in the middle of epoch 2, the first of phase 2.
    interrupted_then_resumed(&b, &flags, "9");
    assert_eq!(
        model_tensors(&a.join("last.npz")),
        model_tensors(&b.join("last.npz"))
    );
}

/// `lr-find`: a plot, a suggestion inside the tested range and below the divergence, no model.
#[test]
fn lr_find_suggests_a_rate_and_draws_the_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let plot = tmp.path().join("lr.png");
    let r = run(&[
        "lr-find",
        "--data",
        s(&sports()),
        "--weights",
        s(&shared().join("weights/mobilenet_v2_0.35_224_no_top")),
        "--limit-per-class",
        "20",
        "--batch-size",
        "16",
        "--steps",
        "60",
        "--plot",
        s(&plot),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let t = stdout(&r);
    let lr: f64 = t
        .lines()
        .find_map(|l| l.strip_prefix("Suggested lr: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{t}"))
        .parse()
        .unwrap();
    assert!((1e-5..1.0).contains(&lr), "{lr}");
    let (w, h) = image::image_dimensions(&plot).unwrap();
    assert_eq!((w, h), (800, 450));
}

/// `--labels-csv`: the photos listed in a CSV with a split column train and score as the same
/// photos in folders do (same seed: the same history), and `eval` reads the CSV's test rows;
/// a missing file is named with its line.
#[test]
fn a_labels_csv_trains_as_the_same_folders_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (folders, listed) = (tmp.path().join("folders"), tmp.path().join("listed"));
    let mut csv = String::from("path,label,split\n");
    for split in ["train", "valid", "test"] {
        for class in ["archery", "boxing", "golf"] {
            let dst = folders.join(split).join(class);
            std::fs::create_dir_all(&dst).unwrap();
            let mut files: Vec<PathBuf> = std::fs::read_dir(sports().join(split).join(class))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for f in files.iter().take(8) {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                std::os::unix::fs::symlink(f, dst.join(&name)).unwrap();
                csv += &format!("{split}/{class}/{name},{class},{split}\n");
            }
        }
    }
    // The CSV sits in the data folder, so its relative paths name the same files.
    std::fs::write(folders.join("labels.csv"), &csv).unwrap();
    let weights = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let common = [
        "--weights",
        s(&weights),
        "--epochs",
        "2",
        "--seed",
        "4",
        "--quiet",
    ];
    let a = tmp.path().join("a");
    let mut args = vec!["train", "--data", s(&folders), "--out", s(&a)];
    args.extend(common);
    assert_eq!(run(&args).status.code(), Some(0));
    let b = tmp.path().join("b");
    let csv_path = folders.join("labels.csv");
    let mut args = vec!["train", "--labels-csv", s(&csv_path), "--out", s(&b)];
    args.extend(common);
    let r = run(&args);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(
        column(&history(&a), "val_loss"),
        column(&history(&b), "val_loss")
    );
    let e = run(&["eval", "--checkpoint", s(&b), "--json"]);
    assert_eq!(e.status.code(), Some(0), "{}", stderr(&e));
    let v: Value = serde_json::from_str(&stdout(&e)).unwrap();
    assert_eq!(v["total"], 15, "the CSV's 5 test rows a class");

    std::fs::write(&listed, "path,label\nnowhere.jpg,golf\n").unwrap();
    let r = run(&[
        "train",
        "--labels-csv",
        s(&listed),
        "--weights",
        s(&weights),
        "--out",
        s(&tmp.path().join("c")),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        stderr(&r).contains(":2: ") && stderr(&r).contains("nowhere.jpg: no such file"),
        "{}",
        stderr(&r)
    );
}
