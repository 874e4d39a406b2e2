"""Writes the Grad-CAM golden fixtures beside this script, computed by Keras exactly as keras.io's
"Grad-CAM class activation visualization" example does (float32, CPU). Run from the repository root
with the peers' venv (TensorFlow):

    benches/.venv/bin/python crates/mobilenet/tests/golden/make_grad_cam.py ../shared

Two fixtures, of kind "grad_cam" (schema documented in crates/mobilenet/tests/golden.rs):
  grad_cam_a100_top   ImageNet MobileNetV2 alpha 1.0 with its top: the class score is the top's logit.
  grad_cam_a035_head  alpha 0.35 base + GAP + Dropout + Dense(32, relu) + Dense(5): a trained run's shape,
                      the class score is the head's logit; the head's initial values are stored in init/.
Each: 3 real test photos (224x224, so no resize) stored as uint8 pixels, x/127.5-1; maps for the
predicted class, the second-ranked class, and one fixed class index. Tolerances: 5x the largest
difference between this float32 computation and the same one in float64, at least 2e-4 (abs)
+ 1e-4 (rel), the floor of ../shared/golden's layer fixtures.
"""

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PHOTOS = ["test/bmx/1.jpg", "test/golf/2.jpg", "test/hockey/3.jpg"]


def keras_model(weights_dir, alpha, top, head, dtype):
    import keras

    keras.config.set_floatx(dtype)
    base = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=alpha, include_top=top, weights=None,
        classifier_activation=None)
    for layer in base.layers:
        for var in layer.weights:
            short = var.path.split("/")[-1]
            path = os.path.join(weights_dir, layer.name, short + ".npy")
            if not os.path.exists(path):  # Keras 3 names a depthwise kernel "kernel"
                path = os.path.join(weights_dir, layer.name, "depthwise_" + short + ".npy")
            if not os.path.exists(path):
                raise SystemExit(f"{path}: missing for {var.path}")
            var.assign(np.load(path).astype(dtype))
    if head is None:
        return base
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling2d")(base.output)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    x = keras.layers.Dense(5, activation=None, name="dense_1")(x)
    model = keras.Model(base.input, x)
    for name in ("dense", "dense_1"):
        layer = model.get_layer(name)
        layer.kernel.assign(head[f"{name}/kernel"].astype(dtype))
        layer.bias.assign(head[f"{name}/bias"].astype(dtype))
    return model


def grad_cam(model, x, targets):
    """keras.io's make_gradcam_heatmap, for each image and target (rank k or class index)."""
    import keras
    import tensorflow as tf

    grad_model = keras.models.Model(model.inputs, [model.get_layer("out_relu").output, model.output])
    logits = grad_model(x)[1].numpy()
    maps, classes = {}, {}
    for key, t in targets.items():
        per_image, chosen = [], []
        for i in range(x.shape[0]):
            order = np.argsort(-logits[i], kind="stable")
            c = int(order[t["rank"]]) if "rank" in t else int(t["class"])
            with tf.GradientTape() as tape:
                conv, preds = grad_model(x[i:i + 1])
                score = preds[:, c]
            grads = tape.gradient(score, conv)
            pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
            heat = tf.squeeze(conv[0] @ pooled[..., tf.newaxis])
            heat = tf.maximum(heat, 0)
            m = tf.reduce_max(heat)
            heat = heat / m if float(m) > 0 else heat  # an all-zero map stays zero
            per_image.append(heat.numpy())
            chosen.append(c)
        maps[key] = np.stack(per_image)
        classes[key] = np.array(chosen, dtype=np.int64)
    return logits, maps, classes


def fixture(shared, name, alpha, top, weights, head_seed, description):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    pixels = np.stack([np.asarray(Image.open(os.path.join(shared, "data/sports15", p)).convert("RGB"))
                       for p in PHOTOS])
    assert pixels.shape[1:] == (224, 224, 3), pixels.shape
    np.save(os.path.join(out, "pixels.npy"), pixels.astype(np.uint8))
    head = None
    if head_seed is not None:
        rng = np.random.default_rng(head_seed)
        feats = int(1280 if alpha <= 1.0 else 1280 * alpha)
        head = {
            "dense/kernel": rng.uniform(-0.1, 0.1, (feats, 32)).astype(np.float32),
            "dense/bias": rng.uniform(-0.05, 0.05, (32,)).astype(np.float32),
            "dense_1/kernel": rng.uniform(-0.3, 0.3, (32, 5)).astype(np.float32),
            "dense_1/bias": rng.uniform(-0.05, 0.05, (5,)).astype(np.float32),
        }
        os.makedirs(os.path.join(out, "init/dense"), exist_ok=True)
        os.makedirs(os.path.join(out, "init/dense_1"), exist_ok=True)
        for k, v in head.items():
            np.save(os.path.join(out, "init", k + ".npy"), v)
    targets = {"rank0": {"rank": 0}, "rank1": {"rank": 1}, "class3": {"class": 3}}
    wdir = os.path.join(shared, "weights", weights)
    results = {}
    for dtype in ("float64", "float32"):
        x = (pixels.astype(dtype) / 127.5 - 1.0).astype(dtype)
        results[dtype] = grad_cam(keras_model(wdir, alpha, top, head, dtype), x, targets)
    logits32, maps32, classes32 = results["float32"]
    logits64, maps64, classes64 = results["float64"]
    np.save(os.path.join(out, "logits.npy"), logits32.astype(np.float32))
    # 5x the float32-float64 difference, but not below the floor that the layer-output fixtures in
    # ../shared/golden allow another float32 implementation (its summation orders differ).
    tol = lambda a, b: float(max(5 * np.max(np.abs(a - b)), 2e-4))  # noqa: E731
    checks = [{"tensor": "logits", "file": "logits.npy", "abs": tol(logits32, logits64), "rel": 1e-4}]
    for key, t in targets.items():
        assert (classes32[key] == classes64[key]).all(), f"{key}: float32 and float64 pick other classes"
        np.save(os.path.join(out, f"heatmap_{key}.npy"), maps32[key].astype(np.float32))
        np.save(os.path.join(out, f"classes_{key}.npy"), classes32[key])
        checks.append({"tensor": "heatmap", "target": t, "file": f"heatmap_{key}.npy",
                       "classes": f"classes_{key}.npy", "abs": tol(maps32[key], maps64[key]), "rel": 1e-4})
    import keras
    import tensorflow as tf
    manifest = {
        "schema": 1, "kind": "grad_cam", "name": name, "description": description,
        "source": f"Keras {keras.__version__} / TensorFlow {tf.__version__}, float32, CPU; "
                  "keras.io Grad-CAM recipe, crates/mobilenet/tests/golden/make_grad_cam.py",
        "model": {"alpha": alpha, "input_shape": [224, 224, 3], "include_top": top, "weights": weights},
        "pixels": "pixels.npy", "preprocess": "mobilenet",
        "images": [{"file": p, "sha256": hashlib.sha256(open(os.path.join(shared, "data/sports15", p), "rb")
                                                         .read()).hexdigest()} for p in PHOTOS],
        "last_conv_layer": "out_relu",
        "checks": checks,
    }
    if head is not None:
        manifest["head"] = {"dense": 32, "dropout": 0.2, "classes": 5,
                            "init": {k: f"init/{k}.npy" for k in head}}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(name, json.dumps([(c["file"], c["abs"]) for c in checks]))


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else "../shared"
    fixture(shared, "grad_cam_a100_top", 1.0, True, "mobilenet_v2_1.0_224", None,
            "Grad-CAM of the ImageNet top's logits at out_relu, 3 real sports photos")
    fixture(shared, "grad_cam_a035_head", 0.35, False, "mobilenet_v2_0.35_224_no_top", 11,
            "Grad-CAM of a dense head's logits at out_relu (a trained run's shape), 3 real sports photos")


if __name__ == "__main__":
    main()
