"""The study's step 3 in Keras, for the end-to-end wall time in benches/compare.sh --e2e:
ImageDataGenerator (rescale 1/255, rotation 20, shifts 0.2, zoom 0.2, horizontal flip), batch 32,
MobileNetV2 base with its last 3 layers trainable + GAP + Dense(256, relu) + Dense(classes,
softmax), Adam 1e-4, 10 epochs with validation, then test evaluation. Random base weights (the
wall time does not depend on them)."""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

# Keras 3 keeps the study's ImageDataGenerator under tf.keras (keras.src.legacy).
ImageDataGenerator = tf.keras.preprocessing.image.ImageDataGenerator


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    keras.utils.set_random_seed(0)
    aug = ImageDataGenerator(rescale=1 / 255, rotation_range=20, width_shift_range=0.2,
                             height_shift_range=0.2, zoom_range=0.2, horizontal_flip=True)
    plain = ImageDataGenerator(rescale=1 / 255)
    flow = dict(target_size=(224, 224), batch_size=32, class_mode="categorical")
    train = aug.flow_from_directory(os.path.join(args.data, "train"), **flow)
    valid = plain.flow_from_directory(os.path.join(args.data, "valid"), **flow)
    test = plain.flow_from_directory(os.path.join(args.data, "test"), shuffle=False, **flow)
    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=None)
    base.trainable = False
    for layer in base.layers[-3:]:
        layer.trainable = True
    model = keras.Sequential([
        base, keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(train.num_classes, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-4), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=valid, epochs=args.epochs, verbose=2)
    print(model.evaluate(test, verbose=0))


if __name__ == "__main__":
    main()
