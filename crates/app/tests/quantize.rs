//! `app quantize`, then `predict --model` and `serve --model` with the int8 file: the file keeps
//! the classes and preprocessing, answers like the f32 model on real photos, is written atomically
//! and never replaced without --force; damaged files and missing flags are named errors.

mod common;

use common::{app, run, s, shared, small_run, stderr, stdout};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

fn jsonl_top1(out: &str) -> HashMap<String, String> {
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["path"].as_str().unwrap().to_owned(),
                v["top"][0]["label"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn predict(model: &[&str], inputs: &[&str]) -> HashMap<String, String> {
    let mut args = vec!["predict", "--format", "jsonl", "--quiet"];
    args.extend_from_slice(model);
    args.extend_from_slice(inputs);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    jsonl_top1(&stdout(&out))
}

/// The ImageNet model in int8, calibrated on sports photos: the five test photos keep their
/// labels and the sports photos mostly keep theirs.
#[test]
fn imagenet_int8_keeps_the_labels_of_the_test_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("imagenet.int8");
    let weights = shared().join("weights/mobilenet_v2_1.0_224");
    let calib = shared().join("data/sports15/train");
    let test = shared().join("data/sports15/test");
    let r = run(&[
        "quantize",
        "--weights",
        s(&weights),
        "--calibration",
        s(&calib),
        "--samples",
        "48",
        "--check",
        s(&test),
        "--out",
        s(&model),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let out = stdout(&r);
    assert!(out.contains("on 48 photos"), "{out}");
    assert!(
        out.contains("--check photos: top-1 agreement with f32"),
        "{out}"
    );

    let photos = shared().join("weights/test_images");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(photos.join("expected.json")).unwrap())
            .unwrap();
    let names: Vec<String> = expected
        .as_object()
        .unwrap()
        .keys()
        .map(|n| s(&photos.join(n)).to_owned())
        .collect();
    let inputs: Vec<&str> = names.iter().map(String::as_str).collect();
    let labels = predict(&["--model", s(&model)], &inputs);
    assert_eq!(labels.len(), 5);
    for (name, e) in expected.as_object().unwrap() {
        let got = &labels[s(&photos.join(name))];
        assert_eq!(got, e["top1_label"].as_str().unwrap(), "{name}");
    }
    let f32_labels = predict(&["--weights", s(&weights)], &[s(&test)]);
    let int8_labels = predict(&["--model", s(&model)], &[s(&test)]);
    let same = f32_labels
        .iter()
        .filter(|(p, l)| int8_labels.get(*p) == Some(l))
        .count();
    assert!(
        f32_labels.len() >= 75 && same * 100 >= f32_labels.len() * 90,
        "{same}/{}",
        f32_labels.len()
    );
}

/// A run quantized with its defaults (train split to calibrate, valid and test to check), used by
/// predict (formats, shards) and serve; the file is kept when --out exists without --force.
#[test]
fn a_quantized_run_predicts_and_serves_its_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let r = small_run(&dir, &[]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let model = tmp.path().join("run.int8");
    let r = run(&[
        "quantize",
        "--checkpoint",
        s(&dir),
        "--samples",
        "30",
        "--out",
        s(&model),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let out = stdout(&r);
    assert!(out.contains("on 30 photos"), "{out}");
    assert!(
        out.contains("valid split: top-1 agreement") && out.contains("test split: top-1 agreement"),
        "{out}"
    );
    let bytes = std::fs::read(&model).unwrap();

    let again = run(&["quantize", "--checkpoint", s(&dir), "--out", s(&model)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(&model).unwrap(),
        bytes,
        "the existing model was changed"
    );

    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let classes: Vec<String> = serde_json::from_value(config["classes"].clone()).unwrap();
    let test = shared().join("data/sports15/test");
    let all = predict(&["--model", s(&model)], &[s(&test)]);
    assert!(all.len() >= 75);
    assert!(all.values().all(|l| classes.contains(l)));
    // Shards of the int8 run add up to the whole.
    let mut union = HashMap::new();
    for k in ["1/3", "2/3", "3/3"] {
        union.extend(predict(&["--model", s(&model), "--shard", k], &[s(&test)]));
    }
    assert_eq!(union, all);

    serve_checks(&model, &classes);
}

fn serve_checks(model: &Path, classes: &[String]) {
    use std::io::{BufRead, BufReader};
    let mut child = app()
        .args(["serve", "--model", s(model), "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("Listening on "))
        .expect("the server announces its address");
    assert!(
        line.contains("POST /v1/predict") && !line.contains("/v1/explain"),
        "a quantized model does not offer explain: {line}"
    );
    let url = line["Listening on ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(30))
        .build();
    let info: Value = agent
        .get(&format!("{url}/v1/model"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(info["classes"], serde_json::json!(classes));
    assert_eq!(info["explain"], false);
    let photo = std::fs::read(shared().join("data/sports15/test/golf/1.jpg")).unwrap();
    let r: Value = agent
        .post(&format!("{url}/v1/predict?top=3"))
        .set("content-type", "image/jpeg")
        .send_bytes(&photo)
        .unwrap()
        .into_json()
        .unwrap();
    let top = r["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert!(top
        .iter()
        .all(|t| classes.iter().any(|c| c == t["label"].as_str().unwrap())));
    let explain = agent
        .post(&format!("{url}/v1/explain"))
        .set("content-type", "image/jpeg")
        .send_bytes(&photo);
    match explain {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 501),
        other => panic!(
            "explain on a quantized model: {:?}",
            other.map(|r| r.status())
        ),
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn damaged_files_and_missing_flags_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = shared().join("weights/mobilenet_v2_1.0_224");
    let out = tmp.path().join("m.int8");
    let r = run(&["quantize", "--weights", s(&weights), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("--calibration"), "{}", stderr(&r));
    assert!(!out.exists());

    let bad = tmp.path().join("bad.int8");
    std::fs::write(
        &bad,
        b"MNV2INT8\x01\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00{}",
    )
    .unwrap();
    let photo = shared().join("data/sports15/test/golf/1.jpg");
    let r = run(&["predict", "--model", s(&bad), s(&photo)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        stderr(&r).contains("bad.int8") && stderr(&r).contains("truncated"),
        "{}",
        stderr(&r)
    );

    let r = run(&[
        "predict",
        "--model",
        s(&bad),
        "--weights",
        s(&weights),
        s(&photo),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("cannot be used with"), "{}", stderr(&r));
}
