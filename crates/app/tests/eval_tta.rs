//! `eval --tta`: the reported test-time-augmentation score is that of the mean of each photo's
//! probabilities and its mirror's, as `app predict` gives them for the photo and a mirrored copy.

mod common;

use common::{run, s, shared, small_run, stderr, stdout};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// `predict --format jsonl --top K` of every file in `dir`: probabilities by file stem.
fn probabilities(run_dir: &Path, dir: &Path, k: usize) -> HashMap<String, Vec<f64>> {
    let r = run(&[
        "predict",
        "--checkpoint",
        s(run_dir),
        "--format",
        "jsonl",
        "--top",
        &k.to_string(),
        "--quiet",
        s(dir),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    stdout(&r)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let stem = Path::new(v["path"].as_str().unwrap())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut p = vec![0.0; k];
            for t in v["top"].as_array().unwrap() {
                p[t["index"].as_u64().unwrap() as usize] = t["probability"].as_f64().unwrap();
            }
            (stem, p)
        })
        .collect()
}

#[test]
fn tta_is_the_mean_of_each_photo_and_its_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    assert!(small_run(&dir, &[]).status.success());
    let r = run(&[
        "eval",
        "--checkpoint",
        s(&dir),
        "--split",
        "valid",
        "--tta",
        "--json",
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let v: Value = serde_json::from_str(&stdout(&r)).unwrap();
    let classes: Vec<String> = v["confusion"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();

    // Each valid photo (224x224, so not resized) as a lossless PNG, and mirrored.
    let (plain, mirrored) = (tmp.path().join("plain"), tmp.path().join("mirrored"));
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&mirrored).unwrap();
    let mut truth = HashMap::new();
    for (label, class) in classes.iter().enumerate() {
        let folder = shared().join("data/sports15/valid").join(class);
        for e in std::fs::read_dir(folder).unwrap() {
            let path = e.unwrap().path();
            let img = image::open(&path).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (224, 224), "{}", path.display());
            let stem = format!("{class}__{}", path.file_stem().unwrap().to_string_lossy());
            img.save(plain.join(format!("{stem}.png"))).unwrap();
            image::imageops::flip_horizontal(&img)
                .save(mirrored.join(format!("{stem}.png")))
                .unwrap();
            truth.insert(stem, label);
        }
    }
    let k = classes.len();
    let (p, m) = (
        probabilities(&dir, &plain, k),
        probabilities(&dir, &mirrored, k),
    );
    let (mut correct, mut loss) = (0, 0.0);
    for (stem, &label) in &truth {
        let mean: Vec<f64> = p[stem]
            .iter()
            .zip(&m[stem])
            .map(|(a, b)| (a + b) / 2.0)
            .collect();
        let arg = (0..k).fold(0, |a, i| if mean[i] > mean[a] { i } else { a });
        correct += (arg == label) as usize;
        loss -= mean[label].clamp(1e-7, 1.0).ln();
    }
    let tta = &v["tta"];
    assert_eq!(tta["correct"].as_u64().unwrap() as usize, correct, "{tta}");
    let want = loss / truth.len() as f64;
    assert!(
        (tta["loss"].as_f64().unwrap() - want).abs() < 1e-4,
        "{tta} vs loss {want}"
    );
    assert_ne!(tta["loss"], v["loss"], "the flip changes the probabilities");
}
