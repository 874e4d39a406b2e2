//! What the binary's integration tests share: where ../shared is, and running `app` as a user does.
#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// A path as the `&str` an argument list wants (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// The binary, with two worker threads.
pub fn app() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_app"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

/// `app ARGS`, its output captured and echoed for a failing test's log.
pub fn run(args: &[&str]) -> Output {
    let out = app()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the app binary runs");
    eprintln!(
        "$ app {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small run trained on ../shared's sports photos with alpha 0.35 weights (seconds).
pub fn small_run(dir: &Path, extra: &[&str]) -> Output {
    let data = shared().join("data/sports15");
    let weights = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--weights",
        s(&weights),
        "--limit-per-class",
        "3",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--unfreeze",
        "3",
        "--dropout",
        "0.3",
        "--augment",
        "20,0.2,0.2,0.2,1",
        "--lr",
        "1e-3",
        "--seed",
        "7",
        "--quiet",
        "--out",
        s(dir),
    ];
    args.extend_from_slice(extra);
    run(&args)
}
