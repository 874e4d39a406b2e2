"""Inference runtimes as peers of `e2e infer` (fp32) and `e2e infer --int8`: the study's model
(MobileNetV2 alpha 1.0 base + GAP + Dense(256, relu) + Dense(15, softmax), random weights: the
speed does not depend on their values) built in Keras, then

  onnxruntime        exported with tf2onnx (opset 17), ONNX Runtime CPU, 2 intra-op threads
  onnxruntime-int8   the same ONNX model, static post-training quantization (QDQ, per-channel
                     weights, MinMax) calibrated on --calib photos, ONNX Runtime
  openvino           the ONNX model converted by OpenVINO, CPU plugin, 2 threads, latency hint
  openvino-int8      the OpenVINO model quantized by NNCF (post-training, --calib photos)
  litert             TFLiteConverter from the Keras model, the LiteRT interpreter (XNNPACK), 2 threads

Same timing as common.py (two warm-ups, median over --seconds). Converted models are cached in
--cache. Prints one JSON line (task "infer", peer = the runtime)."""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import measure, report  # noqa: E402

RUNTIMES = ["onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8", "litert"]


def keras_model(size):
    import keras

    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None)
    inputs = keras.Input((size, size, 3))
    h = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    h = keras.layers.Dense(256, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(15, activation="softmax")(h))


def calibration(data, count, size):
    paths = []
    for d, dirs, files in os.walk(data):
        dirs.sort()
        paths.extend(os.path.join(d, f) for f in sorted(files) if not f.startswith("."))
    paths = sorted(paths)
    picks = [paths[i * len(paths) // count] for i in range(min(count, len(paths)))]
    out = []
    for p in picks:
        with Image.open(p) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            out.append(np.asarray(im, dtype=np.float32)[None] / 127.5 - 1.0)
    return out


def onnx_path(cache, size):
    path = os.path.join(cache, f"study_mobilenet_v2_1.0_{size}.onnx")
    if not os.path.exists(path):
        import tensorflow as tf
        import tf2onnx

        os.makedirs(cache, exist_ok=True)
        model = keras_model(size)
        spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
        fn = tf.function(lambda x: model(x, training=False))
        tf2onnx.convert.from_function(fn, input_signature=spec, opset=17, output_path=path)
    return path


def onnxruntime(a, int8):
    import onnxruntime as ort

    path = onnx_path(a.cache, a.size)
    if int8:
        from onnxruntime import quantization as q

        qpath = path.replace(".onnx", f".int8_{a.calib_count}.onnx")
        if not os.path.exists(qpath):
            pre = path.replace(".onnx", ".pre.onnx")
            q.shape_inference.quant_pre_process(path, pre)
            photos = calibration(a.calib, a.calib_count, a.size)

            class Reader(q.CalibrationDataReader):
                def __init__(self):
                    self.it = iter({"image": x} for x in photos)

                def get_next(self):
                    return next(self.it, None)

            q.quantize_static(pre, qpath, Reader(), quant_format=q.QuantFormat.QDQ,
                              per_channel=True, activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax)
        path = qpath
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def openvino(a, int8):
    import openvino as ov

    core = ov.Core()
    model = ov.convert_model(onnx_path(a.cache, a.size))
    if int8:
        import nncf

        photos = calibration(a.calib, a.calib_count, a.size)
        model = nncf.quantize(model, nncf.Dataset(photos), subset_size=len(photos))
    model.reshape([a.batch, a.size, a.size, 3])
    config = {"INFERENCE_NUM_THREADS": a.threads, "PERFORMANCE_HINT": "LATENCY"}
    if not int8:
        # fp32 means fp32: on CPUs with AVX512_BF16 or AMX the plugin would otherwise run bf16.
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, "CPU", config)
    req = compiled.create_infer_request()
    return lambda x: req.infer({0: x})


def litert(a):
    import tensorflow as tf

    path = os.path.join(a.cache, f"study_mobilenet_v2_1.0_{a.size}.tflite")
    if not os.path.exists(path):
        os.makedirs(a.cache, exist_ok=True)
        with open(path, "wb") as f:
            f.write(tf.lite.TFLiteConverter.from_keras_model(keras_model(a.size)).convert())
    interp = tf.lite.Interpreter(model_path=path, num_threads=a.threads)
    inp = interp.get_input_details()[0]["index"]
    interp.resize_tensor_input(inp, [a.batch, a.size, a.size, 3])
    interp.allocate_tensors()
    out = interp.get_output_details()[0]["index"]

    def run(x):
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)

    return run


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runtime", choices=RUNTIMES)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--min-iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib", help="photos to calibrate the int8 models on (a folder)")
    p.add_argument("--calib-count", type=int, default=100)
    p.add_argument("--cache", default="benches/.cache")
    a = p.parse_args()
    if a.runtime.endswith("int8") and not a.calib:
        p.error("--calib DIR is needed for the int8 runtimes")
    run = {
        "onnxruntime": lambda: onnxruntime(a, False),
        "onnxruntime-int8": lambda: onnxruntime(a, True),
        "openvino": lambda: openvino(a, False),
        "openvino-int8": lambda: openvino(a, True),
        "litert": lambda: litert(a),
    }[a.runtime]()
    x = np.random.default_rng(0).uniform(-1, 1, (a.batch, a.size, a.size, 3)).astype("float32")
    a.task = "infer"
    t, iters = measure(a, lambda: run(x))
    report(a.runtime, a, t, iters)


if __name__ == "__main__":
    main()
