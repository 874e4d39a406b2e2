"""TensorFlow/Keras side of benches/compare.sh: the study's model as Keras users write it
(MobileNetV2 include_top=False + GAP + Dense(256, relu) + Dense(15, softmax)), random weights,
Adam, categorical cross-entropy. Inference and training steps are tf.functions, the fastest
ordinary Keras way (what model.fit runs per step)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from common import measure, parse_args, report  # noqa: E402


def main():
    args = parse_args()
    n, s = args.batch, args.size
    base = keras.applications.MobileNetV2(input_shape=(s, s, 3), include_top=False, weights=None)
    base.trainable = False
    if args.task == "train-b":
        for layer in base.layers[-3:]:
            layer.trainable = True
    if args.task == "train-c":
        base.trainable = True
    inputs = keras.Input((s, s, 3))
    # training=None: frozen layers run in inference mode, as in the study.
    h = base(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(256, activation="relu")(h)
    out = keras.layers.Dense(15, activation="softmax")(h)
    model = keras.Model(inputs, out)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (n, s, s, 3)).astype("float32"))
    y = tf.constant(np.eye(15, dtype="float32")[np.arange(n) % 15])
    if args.task == "infer":
        f = tf.function(lambda x: model(x, training=False))
        t, iters = measure(args, lambda: f(x).numpy())
    else:
        opt = keras.optimizers.Adam(1e-5)
        loss_fn = keras.losses.CategoricalCrossentropy()
        weights = model.trainable_variables

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            opt.apply_gradients(zip(tape.gradient(loss, weights), weights))
            return loss

        t, iters = measure(args, lambda: step(x, y).numpy())
    report("tensorflow", args, t, iters)


if __name__ == "__main__":
    main()
