"""Checks a model written by `app export` in ONNX Runtime against `app predict` on the same photos.

    benches/.venv/bin/python benches/peers/onnx_check.py --model model.onnx \
        --app target/release/app --checkpoint RUN [--best] PHOTO_OR_FOLDER...
    (or --weights DIR instead of --checkpoint, for an exported ImageNet model)

Each photo is decoded by PIL and resized to the model's input size (from the metadata, with its
interpolation), then saved as a lossless PNG at exactly that size, so both sides see the same
pixels: `app predict` decodes the PNG (no resize is needed at the model's own size), and ONNX
Runtime gets the same RGB values, scaled as the metadata says unless the scaling is in the graph.
Fails (exit 1) when a probability differs by more than --tolerance (default 1e-4) or a top-1
label differs; prints one JSON line with the numbers.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from PIL import Image, UnidentifiedImageError

RESAMPLE = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def photos(paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            for d, dirs, files in os.walk(p):
                dirs[:] = sorted(x for x in dirs if not x.startswith("."))
                out.extend(os.path.join(d, f) for f in sorted(files) if not f.startswith("."))
        else:
            out.append(p)
    return sorted(out)


def metadata(session):
    meta = session.get_modelmeta().custom_metadata_map
    for key in ("classes", "input_size", "preprocessing_formula", "preprocessing_in_graph"):
        if key not in meta:
            sys.exit(f"{key!r} missing from the model's metadata_props")
    return meta


def scaling(meta):
    # "x * SCALE + OFFSET on RGB values 0..255"
    words = meta["preprocessing_formula"].split()
    return float(words[2]), float(words[4])


def app_probabilities(args, folder, classes):
    source = ["--checkpoint", args.checkpoint] if args.checkpoint else ["--weights", args.weights]
    if args.best:
        source.append("--best")
    cmd = [args.app, "predict", *source, "--format", "jsonl", "--quiet", "--top", str(len(classes)), folder]
    lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    out = {}
    for line in lines:
        row = json.loads(line)
        p = np.zeros(len(classes), dtype=np.float64)
        for t in row["top"]:
            p[t["index"]] = t["probability"]
        out[os.path.basename(row["path"])] = p
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--app", default="target/release/app")
    ap.add_argument("--checkpoint")
    ap.add_argument("--best", action="store_true")
    ap.add_argument("--weights")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--limit", type=int, default=16, help="at most this many photos")
    ap.add_argument("photos", nargs="+")
    args = ap.parse_args()
    if bool(args.checkpoint) == bool(args.weights):
        sys.exit("pass exactly one of --checkpoint RUN and --weights DIR")

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    meta = metadata(session)
    classes = json.loads(meta["classes"])
    h, w = (int(v) for v in meta["input_size"].split("x"))
    resample = RESAMPLE[meta.get("interpolation", "bilinear")]
    in_graph = meta["preprocessing_in_graph"] == "true"
    scale, offset = scaling(meta)

    with tempfile.TemporaryDirectory() as tmp:
        pixels = {}
        for i, f in enumerate(photos(args.photos)):
            if len(pixels) == args.limit:
                break
            try:
                with Image.open(f) as im:
                    rgb = im.convert("RGB").resize((w, h), resample)
            except (UnidentifiedImageError, OSError):
                continue  # not a photo
            name = f"{i:05d}.png"
            rgb.save(os.path.join(tmp, name))
            pixels[name] = np.asarray(rgb, dtype=np.float32)
        if not pixels:
            sys.exit("no photos among the inputs")
        ours = app_probabilities(args, tmp, classes)

    names = sorted(pixels)
    x = np.stack([pixels[n] for n in names])
    if not in_graph:
        x = x * np.float32(scale) + np.float32(offset)
    (theirs,) = session.run(["probabilities"], {"image": x})
    worst, top1_differs = 0.0, 0
    for n, p in zip(names, theirs):
        if n not in ours:
            sys.exit(f"app predict gave no result for {n}")
        worst = max(worst, float(np.max(np.abs(p - ours[n]))))
        top1_differs += int(np.argmax(p) != np.argmax(ours[n]))
    ok = worst <= args.tolerance and top1_differs == 0
    print(json.dumps({
        "model": args.model, "onnxruntime": ort.__version__, "photos": len(names),
        "max_abs_diff": worst, "tolerance": args.tolerance, "top1_differs": top1_differs,
        "preprocessing_in_graph": in_graph, "ok": ok,
    }))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
