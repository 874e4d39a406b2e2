"""Peers of `app predict` on a folder of photos, end to end in one process: walk the folder (sorted),
PIL-decode each photo, resize to 224x224 (bilinear), x/127.5-1, batches of --batch, MobileNetV2 alpha
1.0 with the ImageNet top (random weights: the speed does not depend on their values), top-1.

  --runtime keras        model.predict_on_batch (TensorFlow/Keras)
  --runtime onnxruntime  the same Keras model exported with tf2onnx (opset 17), ONNX Runtime, 2 threads

Timed from the first file read to the last top-1 (imports, model building and the ONNX export are
not counted: this favours the peers). Prints one JSON line."""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def images(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        out.extend(os.path.join(d, f) for f in sorted(files) if not f.startswith("."))
    return sorted(out)


def load(path, size):
    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 127.5 - 1.0


def keras_model(size):
    import keras

    return keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None)


def runner(runtime, size, threads, cache):
    model = keras_model(size)
    if runtime == "keras":
        return lambda x: model.predict_on_batch(x)
    import onnxruntime as ort

    path = os.path.join(cache, f"mobilenet_v2_1.0_{size}.onnx")
    if not os.path.exists(path):
        import tensorflow as tf
        import tf2onnx

        os.makedirs(cache, exist_ok=True)
        spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
        fn = tf.function(lambda x: model(x, training=False))
        tf2onnx.convert.from_function(fn, input_signature=spec, opset=17, output_path=path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runtime", choices=["keras", "onnxruntime"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default="benches/.cache")
    a = p.parse_args()
    run = runner(a.runtime, a.size, a.threads, a.cache)
    run(np.zeros((1, a.size, a.size, 3), np.float32))  # warm-up, as a served model would be
    start = time.perf_counter()
    paths = images(a.data)
    top1 = []
    for i in range(0, len(paths), a.batch):
        x = np.stack([load(q, a.size) for q in paths[i : i + a.batch]])
        top1.extend(np.argmax(run(x), axis=1).tolist())
    seconds = time.perf_counter() - start
    print(json.dumps({
        "peer": a.runtime,
        "task": "predict-folder",
        "images": len(top1),
        "seconds": seconds,
        "images_per_s": len(top1) / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }), flush=True)


if __name__ == "__main__":
    main()
