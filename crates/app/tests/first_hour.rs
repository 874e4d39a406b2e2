//! What a new user meets in the first hour: results scored as the run was trained, runs that are
//! never lost, quiet closed pipes, clear errors for nonsense, and the rough edges of the output.

mod common;

use common::{app, run, shared, stderr, stdout};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn data() -> String {
    s(&shared().join("data/sports15"))
}

fn small_weights() -> String {
    s(&shared().join("weights/mobilenet_v2_0.35_224_no_top"))
}

/// Arguments of a tiny run: alpha 0.35, 2 images a class, 1 epoch, cached features.
fn tiny(out: &Path) -> Vec<String> {
    [
        "train",
        "--data",
        &data(),
        "--weights",
        &small_weights(),
        "--limit-per-class",
        "2",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        &s(out),
    ]
    .map(String::from)
    .to_vec()
}

fn train(args: &[String]) -> Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&a)
}

/// One finished tiny run, shared by the tests that only read it.
fn finished_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("run");
        let out = train(&tiny(&dir));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        dir
    })
}

/// A private copy of the finished run, for tests that change it.
fn copy_of_run(to: &Path) -> PathBuf {
    let dst = to.join("copy");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(finished_run()).unwrap() {
        let e = e.unwrap();
        // The files of the run; its folders (the top-losses gallery) are not needed here.
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    dst
}

fn expect_error(args: &[&str], says: &str) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = stderr(&out);
    assert!(err.contains(says), "{args:?}: expected {says:?} in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn predict_scores_with_the_runs_interpolation_and_says_so() {
    let run_dir = s(finished_run());
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(finished_run().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["interpolation"], "nearest");
    // A photo larger than 224x224, so the resize matters.
    let photo = s(&shared().join("weights/test_images/grace_hopper.bmp"));
    let with = |extra: &[&str]| {
        let mut a = vec!["predict", "--checkpoint", &run_dir, "--top", "3", &photo];
        a.extend_from_slice(extra);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(0));
        (stdout(&o), stderr(&o))
    };
    let (default, note) = with(&[]);
    assert!(note.contains("resize nearest (the run's)"), "{note}");
    let (nearest, _) = with(&["--interpolation", "nearest"]);
    let (bilinear, override_note) = with(&["--interpolation", "bilinear"]);
    assert_eq!(default, nearest, "predict resizes as the run trained");
    assert_ne!(default, bilinear);
    assert!(
        override_note.contains("resize bilinear (--interpolation; the run used nearest)"),
        "{override_note}"
    );
}

#[test]
fn out_refuses_a_folder_that_holds_a_run() {
    let d = tempfile::tempdir().unwrap();
    let run_dir = copy_of_run(d.path());
    let before = std::fs::read(run_dir.join("last.npz")).unwrap();
    let out = train(&tiny(&run_dir));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("the folder is not empty (it holds a run)"),
        "{err}"
    );
    assert!(
        err.contains("--overwrite") && err.contains("--resume"),
        "{err}"
    );
    assert_eq!(std::fs::read(run_dir.join("last.npz")).unwrap(), before);
    let mut again = tiny(&run_dir);
    again.push("--overwrite".into());
    assert_eq!(train(&again).status.code(), Some(0));
}

#[test]
fn default_run_folders_never_collide() {
    let d = tempfile::tempdir().unwrap();
    let dry = |cwd: &Path| {
        let mut c = app();
        c.current_dir(cwd).args([
            "train",
            "--data",
            &data(),
            "--weights",
            &small_weights(),
            "--limit-per-class",
            "1",
            "--epochs",
            "1",
            "--quiet",
            "--interrupt-after",
            "1",
        ]);
        c.output().unwrap()
    };
    // Two runs started in the same second, each interrupted after its first batch.
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(|| dry(d.path()));
        let b = sc.spawn(|| dry(d.path()));
        (a.join().unwrap(), b.join().unwrap())
    });
    let runs: Vec<PathBuf> = std::fs::read_dir(d.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 2, "{}{}", stderr(&a), stderr(&b));
    for r in runs {
        assert!(r.join("config.json").is_file(), "{}", r.display());
    }
}

#[test]
fn eval_best_keeps_the_reports_matrix_and_names_its_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let run_dir = copy_of_run(d.path());
    let png = std::fs::read(run_dir.join("confusion_test.png")).unwrap();
    let r = s(&run_dir);
    let out = run(&["eval", "--checkpoint", &r, "--best"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "Checkpoint: {}",
            run_dir.join("best.npz").display()
        )),
        "{text}"
    );
    assert!(run_dir.join("confusion_test_best.png").is_file());
    assert_eq!(
        std::fs::read(run_dir.join("confusion_test.png")).unwrap(),
        png
    );
    let json = run(&["eval", "--checkpoint", &r, "--json"]);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert!(
        v["checkpoint"].as_str().unwrap().ends_with("last.npz"),
        "{v}"
    );
}

#[test]
fn closed_pipes_end_quietly() {
    let r = s(finished_run());
    for args in [
        vec!["eval", "--checkpoint", &r],
        vec!["eval", "--checkpoint", &r, "--json"],
    ] {
        let mut child = app()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
    }
}

#[test]
fn nonsense_is_refused_with_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("never");
    let o = s(&out);
    let w = small_weights();
    let dd = data();
    let base = ["train", "--data", &dd, "--weights", &w, "--out", &o];
    let with = |extra: [&'static str; 2]| {
        let mut a = base.to_vec();
        a.extend_from_slice(&extra);
        a
    };
    expect_error(
        &with(["--limit-per-class", "0"]),
        "--limit-per-class must be at least 1",
    );
    expect_error(
        &with(["--unfreeze", "1000"]),
        "--unfreeze 1000: the base has only 153 layers",
    );
    expect_error(
        &with(["--lr", "-1"]),
        "--lr must be a positive number, got -1",
    );
    expect_error(
        &with(["--batch-size", "0"]),
        "--batch-size must be at least 1",
    );
    expect_error(&with(["--epochs", "0"]), "--epochs must be at least 1");
    assert!(!out.exists(), "no run folder for a refused run");
    let split = s(&shared().join("data/sports15/train"));
    expect_error(
        &["train", "--data", &split, "--weights", &w, "--out", &o],
        &format!(
            "pass its parent: --data {}",
            shared().join("data/sports15").display()
        ),
    );
    let h5 = std::fs::read_dir(shared().join("weights/h5"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "h5"))
        .expect("an .h5 in ../shared/weights/h5");
    expect_error(
        &["train", "--data", &dd, "--weights", &s(&h5), "--out", &o],
        "convert it first with `cargo xtask fetch weights --from",
    );
    let best = s(&finished_run().join("best.npz"));
    let photo = s(&shared().join("data/sports15/test/golf/1.jpg"));
    expect_error(
        &["predict", "--checkpoint", &best, &photo],
        "pass the run folder, and --best for best.npz",
    );
    expect_error(
        &["eval", "--checkpoint", &best],
        "pass the run folder, and --best for best.npz",
    );
}

#[test]
fn resuming_a_finished_run_does_nothing_and_says_how_to_continue() {
    let d = tempfile::tempdir().unwrap();
    let run_dir = copy_of_run(d.path());
    let report = std::fs::read(run_dir.join("report.html")).unwrap();
    let r = s(&run_dir);
    let out = run(&["train", "--resume", &r, "--quiet"]);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("finished 1 epoch of 1; nothing to do"),
        "{err}"
    );
    assert!(
        err.contains("--epochs N (N > 1)") && err.contains("--init-from"),
        "{err}"
    );
    assert_eq!(std::fs::read(run_dir.join("report.html")).unwrap(), report);
    // --epochs extends it: one more epoch, the history continues.
    let more = run(&["train", "--resume", &r, "--epochs", "2", "--quiet"]);
    assert_eq!(more.status.code(), Some(0), "{}", stderr(&more));
    let h: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("history.json")).unwrap())
            .unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[1]["epoch"], 2);
}

#[test]
fn init_from_starts_a_new_run_from_a_runs_weights() {
    let d = tempfile::tempdir().unwrap();
    let new = d.path().join("new");
    let mut args = tiny(&new);
    args.extend(["--init-from", &s(finished_run()), "--lr", "1e-12"].map(String::from));
    let out = train(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Initial weights: "),
        "{}",
        stdout(&out)
    );
    let a = nn::checkpoint::load_npz(&finished_run().join("last.npz")).unwrap();
    let b = nn::checkpoint::load_npz(&new.join("last.npz")).unwrap();
    for name in ["dense/kernel", "dense_1/kernel"] {
        let worst = a[name]
            .iter()
            .zip(b[name].iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-6,
            "{name} moved by {worst}: not started from the run"
        );
    }
}

#[test]
fn help_describes_every_flag_and_dry_run_shows_the_resolved_configuration() {
    let help = stdout(&run(&["train", "--help"]));
    for flag in ["--epochs", "--batch-size", "--seed"] {
        let line = help
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(flag))
            .nth(1)
            .unwrap_or_default();
        assert!(
            !line.trim().is_empty() && !line.trim_start().starts_with("--"),
            "{flag} has no description:\n{help}"
        );
    }
    let d = tempfile::tempdir().unwrap();
    let out_dir = d.path().join("dry");
    let o = s(&out_dir);
    let w = small_weights();
    let dd = data();
    let out = run(&[
        "train",
        "--preset",
        "study-finetune",
        "--data",
        &dd,
        "--weights",
        &w,
        "--out",
        &o,
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let json_end = text.find("\n}").unwrap() + 2;
    let cfg: Value = serde_json::from_str(&text[..json_end]).unwrap();
    assert_eq!(cfg["preset"], "study-finetune");
    assert_eq!(cfg["unfreeze"], 3);
    assert_eq!(cfg["lr"].as_f64().unwrap() as f32, 1e-4);
    assert_eq!(cfg["classes"].as_array().unwrap().len(), 15);
    assert!(text.contains("nothing was written"), "{text}");
    assert!(!out_dir.exists());
}

#[test]
fn quiet_output_reads_right() {
    let d = tempfile::tempdir().unwrap();
    let mut args = tiny(&d.path().join("r"));
    args.extend(["--dense", "0"].map(String::from));
    let out = train(&args);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("Epoch 1/1")).count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("1 epoch, batch 32") && !text.contains("1 epochs"),
        "{text}"
    );
    assert!(!text.contains("Dense(0"), "{text}");
    assert!(text.contains("head GAP -> Dense(15, softmax)"), "{text}");
    // The report's seconds column has a decimal.
    let report = std::fs::read_to_string(d.path().join("r/report.html")).unwrap();
    let row = report.find("<tr><td>1</td><td>").unwrap() + 18;
    let secs = &report[row..row + report[row..].find('<').unwrap()];
    assert!(secs.contains('.'), "seconds {secs:?}");
}

#[test]
fn eval_caps_the_misclassified_list() {
    let r = s(finished_run());
    let out = run(&[
        "eval",
        "--checkpoint",
        &r,
        "--split",
        "train",
        "--show-misclassified",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let listed = text.lines().filter(|l| l.contains(" taken for ")).count();
    assert!(listed <= 2, "{text}");
    if text.contains("Misclassified:") && listed == 2 {
        assert!(
            text.contains("more (--show-misclassified N lists more)"),
            "{text}"
        );
    }
}

/// Pixels of exactly this colour in a PNG.
fn count_colour(path: &Path, rgb: [u8; 3]) -> usize {
    let img = image::open(path).unwrap().to_rgb8();
    img.pixels().filter(|p| p.0 == rgb).count()
}

#[test]
fn a_one_epoch_history_shows_its_points() {
    let h = finished_run().join("history.png");
    // Markers at the one epoch (a line through one point draws nothing), blue and red, in both panels.
    let (blue, red) = (count_colour(&h, [0, 0, 255]), count_colour(&h, [255, 0, 0]));
    eprintln!("blue {blue}, red {red}");
    assert!(blue > 100, "train markers");
    assert!(red > 100, "validation markers");
}

#[test]
fn ctrl_c_while_caching_features_stops_promptly() {
    let d = tempfile::tempdir().unwrap();
    let w = s(&shared().join("weights/mobilenet_v2_1.0_224"));
    let mut child = app()
        .args([
            "train",
            "--data",
            &data(),
            "--weights",
            &w,
            "--quiet",
            "--out",
            &s(&d.path().join("r")),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.starts_with("Model:") {
        line.clear();
    }
    assert!(line.starts_with("Model:"), "{line}");
    let sent = std::time::Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(
        rest.contains("Interrupted while caching features"),
        "{rest}"
    );
    assert!(
        !rest.contains("Epoch 1/"),
        "no batch trains after Ctrl-C: {rest}"
    );
    assert!(
        sent.elapsed().as_secs_f64() < 5.0,
        "took {:?}",
        sent.elapsed()
    );
}

#[test]
fn activations_lists_suggests_and_takes_images_and_the_top() {
    let w = s(&shared().join("weights/mobilenet_v2_1.0_224"));
    let list = stdout(&run(&["activations", "--weights", &w, "--list"]));
    for name in [
        "Conv1",
        "block_16_project",
        "out_relu",
        "predictions",
        "features",
    ] {
        assert!(
            list.lines().any(|l| l.split('\t').next() == Some(name)),
            "{name}:\n{list}"
        );
    }
    let d = tempfile::tempdir().unwrap();
    let o = s(d.path());
    let photo = s(&shared().join("data/sports15/test/golf/1.jpg"));
    expect_error(
        &[
            "activations",
            "--weights",
            &w,
            "--input",
            &photo,
            "--layers",
            "block_16_projct",
            "--out",
            &o,
        ],
        "did you mean \"block_16_project\"?",
    );
    let out = run(&[
        "activations",
        "--weights",
        &w,
        "--input",
        &photo,
        "--layers",
        "predictions,out_relu",
        "--out",
        &o,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let p: ndarray::ArrayD<f32> = ndarray_npy::read_npy(d.path().join("predictions.npy")).unwrap();
    assert_eq!(p.shape(), [1, 1000]);
    let r: ndarray::ArrayD<f32> = ndarray_npy::read_npy(d.path().join("out_relu.npy")).unwrap();
    assert_eq!(r.shape(), [1, 7, 7, 1280]);
}

#[test]
fn an_error_names_each_cause_once() {
    let w = small_weights();
    let out = run(&[
        "activations",
        "--weights",
        &w,
        "--input",
        "/nonexistent/x.npy",
        "--out",
        "/tmp/unused",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let text = l
            .trim_start_matches("error: ")
            .trim_start_matches("  caused by: ");
        for earlier in &lines[..i] {
            assert!(
                !earlier.contains(text),
                "{text:?} repeats {earlier:?}:\n{err}"
            );
        }
    }
}
