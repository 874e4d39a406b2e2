//! `app summary`: Keras's `model.summary()` numbers for ImageNet weights, where `--unfreeze N`
//! cuts, and a trained run's head; `train` prints the shortened table.

mod common;

use common::{run, s, shared, small_run, stderr, stdout};

fn line_of<'a>(text: &'a str, layer: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{layer} (")))
        .unwrap_or_else(|| panic!("no {layer} in\n{text}"))
}

#[test]
fn imagenet_weights_match_keras_and_unfreeze_marks_the_last_layers() {
    let w = shared().join("weights/mobilenet_v2_1.0_224");
    let r = run(&["summary", "--weights", s(&w), "--unfreeze", "3"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let t = stdout(&r);
    // keras.applications.MobileNetV2().summary()
    assert!(t.contains("Total params: 3,538,984"), "{t}");
    assert!(line_of(&t, "predictions").contains("(None, 1000)"));
    assert!(line_of(&t, "block_16_project").ends_with(" N"));
    for layer in ["Conv_1", "Conv_1_bn", "out_relu"] {
        assert!(line_of(&t, layer).ends_with(" Y"), "{layer}");
    }
    assert!(line_of(&t, "Conv_1").contains("(None, 7, 7, 1280)"));
    assert!(line_of(&t, "Conv_1").contains("409,600"));
    // Conv_1 (409,600) + Conv_1_bn gamma and beta (2,560); the top stays frozen.
    assert!(t.contains("Trainable params: 412,160"), "{t}");
    let r = run(&["summary", "--weights", s(&w), "--unfreeze", "999"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("only 153 layers"), "{}", stderr(&r));
}

#[test]
fn a_run_shows_its_head_and_train_prints_the_short_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let r = small_run(&dir, &[]);
    assert!(r.status.success(), "{}", stderr(&r));
    let r = run(&["summary", "--checkpoint", s(&dir)]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let t = stdout(&r);
    let dense = t.lines().filter(|l| l.contains("(Dense)")).count();
    assert_eq!(dense, 2, "{t}");
    assert!(
        t.lines()
            .any(|l| l.contains("(None, 15)") && l.ends_with(" Y")),
        "{t}"
    );
    assert!(
        line_of(&t, "out_relu").ends_with(" Y"),
        "--unfreeze 3 in the run"
    );
    assert!(line_of(&t, "block_16_project").ends_with(" N"));

    let data = shared().join("data/sports15");
    let weights = shared().join("weights/mobilenet_v2_0.35_224_no_top");
    let out = tmp.path().join("printed");
    let r = run(&[
        "train",
        "--data",
        s(&data),
        "--weights",
        s(&weights),
        "--limit-per-class",
        "2",
        "--epochs",
        "1",
        "--unfreeze",
        "3",
        "--out",
        s(&out),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let t = stdout(&r);
    assert!(t.contains("frozen layers ..."), "{t}");
    assert!(line_of(&t, "Conv_1").ends_with(" Y"), "{t}");
}
