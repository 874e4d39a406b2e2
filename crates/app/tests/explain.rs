//! `app explain`: Grad-CAM overlays and raw maps for ImageNet weights and a trained run; a class by
//! name; files never replaced without --force; bad files named and skipped.

mod common;

use common::{run, s, shared, small_run, stderr, stdout};
use ndarray_npy::read_npy;
use std::path::PathBuf;

fn weights() -> PathBuf {
    shared().join("weights/mobilenet_v2_1.0_224")
}

fn test_image(name: &str) -> PathBuf {
    shared().join("weights/test_images").join(name)
}

fn raw_map(path: PathBuf) -> ndarray::Array2<f32> {
    read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn imagenet_overlays_and_raw_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cams");
    let photos = [test_image("hot_dog.jpg"), test_image("mountain_bike.jpeg")];
    let r = run(&[
        "explain",
        "--weights",
        s(&weights()),
        "--raw",
        "--out",
        s(&out),
        s(&photos[0]),
        s(&photos[1]),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let text = stdout(&r);
    assert!(text.contains("hot_dog.jpg: hotdog 0."), "{text}");
    assert!(
        text.contains("mountain_bike.jpeg: mountain_bike 0."),
        "{text}"
    );
    for (photo, stem) in photos.iter().zip(["hot_dog", "mountain_bike"]) {
        let map = raw_map(out.join(format!("{stem}.cam.npy")));
        assert_eq!(map.dim(), (7, 7), "224/32 cells a side");
        assert!(map.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(map.iter().copied().fold(0.0f32, f32::max), 1.0);
        let png = image::open(out.join(format!("{stem}.cam.png")))
            .unwrap()
            .to_rgb8();
        let (w, h) = image::image_dimensions(photo).unwrap();
        let scale = (800.0 / w.max(h) as f32).min(1.0);
        assert_eq!(
            png.dimensions(),
            (
                (w as f32 * scale).round() as u32,
                (h as f32 * scale).round() as u32
            )
        );
        // The hottest cell is drawn red-ish: more red than blue at its centre.
        let (i, j) = map
            .indexed_iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(ij, _)| ij)
            .unwrap();
        let (pw, ph) = png.dimensions();
        let px = png.get_pixel(
            ((j as f32 + 0.5) / 7.0 * pw as f32) as u32,
            ((i as f32 + 0.5) / 7.0 * ph as f32) as u32,
        );
        assert!(px.0[0] > px.0[2], "{stem}: hottest cell {px:?}");
    }
}

#[test]
fn a_class_by_name_gets_its_own_map_and_the_caption_names_the_prediction() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = test_image("cat.bmp");
    let w = weights();
    let predicted = tmp.path().join("predicted");
    let asked = tmp.path().join("asked");
    for (dir, extra) in [(&predicted, vec![]), (&asked, vec!["--class", "tabby"])] {
        let mut args = vec!["explain", "--weights", s(&w), "--raw", "--out", s(dir)];
        args.extend(extra);
        args.push(s(&cat));
        let r = run(&args);
        assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    }
    let a = raw_map(predicted.join("cat.cam.npy"));
    let b = raw_map(asked.join("cat.cam.npy"));
    assert!(a != b, "the tabby map is not the Egyptian_cat map");
    let r = run(&[
        "explain",
        "--weights",
        s(&weights()),
        "--class",
        "tabyy",
        "--out",
        s(tmp.path()),
        s(&cat),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        stderr(&r).contains("tabby"),
        "suggests the right name: {}",
        stderr(&r)
    );
}

#[test]
fn a_trained_run_explains_its_top_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let t = small_run(&run_dir, &[]);
    assert!(t.status.success(), "{}", stderr(&t));
    let out = tmp.path().join("cams");
    let photo = shared().join("data/sports15/test/golf/1.jpg");
    let r = run(&[
        "explain",
        "--checkpoint",
        s(&run_dir),
        "--top",
        "2",
        "--raw",
        "--out",
        s(&out),
        s(&photo),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    for k in [1, 2] {
        assert!(out.join(format!("1.top{k}.cam.png")).is_file());
        assert_eq!(raw_map(out.join(format!("1.top{k}.cam.npy"))).dim(), (7, 7));
    }
    assert!(stdout(&r).contains("; #2 "), "{}", stdout(&r));
}

#[test]
fn existing_heatmaps_are_kept_and_bad_files_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cams");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("hot_dog.cam.png"), b"mine").unwrap();
    let dog = test_image("hot_dog.jpg");
    let r = run(&[
        "explain",
        "--weights",
        s(&weights()),
        "--out",
        s(&out),
        s(&dog),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("--force"), "{}", stderr(&r));
    assert_eq!(std::fs::read(out.join("hot_dog.cam.png")).unwrap(), b"mine");

    let broken = tmp.path().join("broken.jpg");
    let bytes = std::fs::read(&dog).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let r = run(&[
        "explain",
        "--weights",
        s(&weights()),
        "--force",
        "--out",
        s(&out),
        s(&dog),
        s(&broken),
    ]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(stderr(&r).contains("broken.jpg"), "{}", stderr(&r));
    assert!(
        image::open(out.join("hot_dog.cam.png")).is_ok(),
        "replaced with --force"
    );
    assert!(!out.join("broken.cam.png").exists());
}

/// `eval --gallery N`: N PNGs (photo | overlay side by side, captioned) named by rank and true
/// class, the JSON's top losses sorted by loss (= -ln p(true)) and its most confused pairs
/// consistent with the confusion matrix; the training report shows both.
#[test]
fn eval_gallery_top_losses_and_most_confused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let r = small_run(&dir, &[]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(report.contains("Top losses"), "report has the gallery");
    let test_gallery = std::fs::read_dir(dir.join("top_losses_test"))
        .unwrap()
        .count();
    assert!(test_gallery > 0, "train writes the test split's gallery");

    let r = run(&[
        "eval",
        "--checkpoint",
        s(&dir),
        "--split",
        "valid",
        "--gallery",
        "4",
        "--json",
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let v: serde_json::Value = serde_json::from_str(&stdout(&r)).expect("eval --json is JSON");
    let losses = v["top_losses"].as_array().unwrap();
    assert!(losses.len() >= 4);
    for w in losses.windows(2) {
        assert!(w[0]["loss"].as_f64() >= w[1]["loss"].as_f64(), "{w:?}");
    }
    for l in losses {
        let p = l["p_truth"].as_f64().unwrap();
        let loss = l["loss"].as_f64().unwrap();
        assert!((loss + p.max(1e-7).ln()).abs() < 1e-3, "{l}");
    }
    let classes: Vec<String> = v["confusion"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let matrix = v["confusion"]["matrix"].as_array().unwrap();
    for p in v["most_confused"].as_array().unwrap() {
        let t = classes.iter().position(|c| c == &p["truth"]).unwrap();
        let q = classes.iter().position(|c| c == &p["predicted"]).unwrap();
        assert_ne!(t, q);
        assert_eq!(matrix[t][q], p["count"], "{p}");
    }

    let gallery = dir.join("top_losses_valid");
    let mut files: Vec<_> = std::fs::read_dir(&gallery)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    for (i, (f, l)) in files.iter().zip(losses).enumerate() {
        let truth = l["truth"].as_str().unwrap();
        assert!(
            f.starts_with(&format!("{:02}_{truth}_", i + 1)),
            "{f} vs {l}"
        );
        let (w, h) = image::image_dimensions(gallery.join(f)).unwrap();
        assert!(w > h, "photo and overlay side by side: {w}x{h}");
    }
    assert!(!dir.join("top_losses_valid.partial").exists());
}
