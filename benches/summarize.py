"""Turns benches/compare.sh's raw JSON lines into the results table (Markdown on stdout):
median over rounds per (peer, task, batch), each figure beside the peers' with the ratio us/peer,
and the issue's targets checked against TensorFlow/Keras measured in the same run.
Usage: summarize.py RAW.jsonl [PROFILE.md]"""

import json
import os
import platform
import statistics
import sys
from collections import defaultdict

PEERS = ["this", "tensorflow", "pytorch"]
ROWS = [  # (task, batch, label, field, higher_is_better, target ratio vs TF)
    ("infer", 32, "inference, batch 32 (images/s)", "images_per_s", True, 1.5),
    ("infer", 1, "latency, batch 1 (ms)", "ms_per_batch", False, 0.67),
    ("traina", 32, "train A: base frozen (images/s)", "images_per_s", True, 1.5),
    ("trainb", 32, "train B: last 3 base layers (images/s)", "images_per_s", True, 1.5),
    ("trainc", 32, "train C: all trainable (images/s)", "images_per_s", True, 1.5),
    ("study-finetune", 32, "--preset study-finetune, end to end (s)", "wall_s", False, None),
]
MEM_ROWS = [("infer", 32), ("infer", 1), ("traina", 32), ("trainb", 32), ("trainc", 32)]


def cpu_name():
    """The CPU's name, family/model and the vector features the kernels choose between (results on
    an AVX2-only CPU and on one with AVX-512 VNNI are not comparable)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor()
    flags = info.get("flags", "").split()
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"]
    have = [f for f in wanted if f in flags] or ["none of " + ", ".join(wanted)]
    return (f"{info.get('model name', platform.processor())} (family {info.get('cpu family', '?')}, "
            f"model {info.get('model', '?')}; {' '.join(have)})")


RUNTIMES = [  # (peer, heading)
    ("this", "this fp32"), ("this-int8", "this int8"), ("onnxruntime", "ONNX Runtime"),
    ("onnxruntime-int8", "ONNX Runtime int8"), ("openvino", "OpenVINO"),
    ("openvino-int8", "OpenVINO int8"), ("litert", "LiteRT (XNNPACK)"),
]
RUNTIME_TARGETS = [  # (label, ours, peer, batch, field, higher_is_better, target ratio)
    ("int8 batch 32 vs OpenVINO int8", "this-int8", "openvino-int8", 32, "images_per_s", True, 1.1),
    ("int8 batch 32 vs ONNX Runtime int8", "this-int8", "onnxruntime-int8", 32, "images_per_s", True, None),
    ("fp32 batch 1 vs LiteRT", "this", "litert", 1, "ms_per_batch", False, 1.0),
    ("int8 batch 1 vs LiteRT fp32", "this-int8", "litert", 1, "ms_per_batch", False, None),
    ("int8 batch 1 vs OpenVINO int8", "this-int8", "openvino-int8", 1, "ms_per_batch", False, None),
]


def runtimes_table(med):
    """Inference against every runtime (fp32 and int8), and the int8/latency targets."""
    if med("this-int8", "infer", 32, "images_per_s") is None:
        return []
    out = ["\n## Inference runtimes (2 threads; int8 calibrated on 100 photos)\n"]
    out.append("| measurement | " + " | ".join(h for _, h in RUNTIMES) + " |")
    out.append("|---|" + "---:|" * len(RUNTIMES))
    for batch, field, label in [(32, "images_per_s", "batch 32 (images/s)"), (1, "ms_per_batch", "batch 1 (ms)")]:
        cells = [med(p, "infer", batch, field) for p, _ in RUNTIMES]
        out.append(f"| {label} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |")
    out.append("\n| target | ours | peer | ratio | target | met |")
    out.append("|---|---:|---:|---:|---:|:-:|")
    for label, ours, peer, batch, field, higher, target in RUNTIME_TARGETS:
        a, b = med(ours, "infer", batch, field), med(peer, "infer", batch, field)
        if a is None or b is None:
            continue
        r = a / b
        met = "-" if target is None else ("yes" if (r >= target if higher else r <= target) else "no")
        tgt = "-" if target is None else (">= " if higher else "<= ") + f"{target}x"
        out.append(f"| {label} | {a:.1f} | {b:.1f} | {r:.2f}x | {tgt} | {met} |")
    return out


def main():
    runs = defaultdict(list)
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if "wall_ms" in r:
                r["wall_s"] = r["wall_ms"] / 1000
            if r["peer"] == "this" and r["task"] == "infer-int8":
                r["peer"], r["task"] = "this-int8", "infer"
            runs[(r["peer"], r["task"], r["batch"])].append(r)

    def med(peer, task, batch, field):
        v = [r[field] for r in runs.get((peer, task, batch), []) if r.get(field) is not None]
        return statistics.median(v) if v else None

    out = []
    out.append(f"# Side-by-side benchmark, {os.path.basename(sys.argv[1]).split('.')[0]}\n")
    out.append(f"Machine: {cpu_name()}, {os.cpu_count()} cores. MobileNetV2 alpha 1.0 at 224x224 "
               "+ GAP + Dense(256, relu) + Dense(15); medians over the rounds; peers alternated "
               "with this project in one run (`benches/compare.sh`).\n")
    out.append("| measurement | this | TensorFlow/Keras | PyTorch | this/TF | this/PyTorch | target vs TF | met |")
    out.append("|---|---:|---:|---:|---:|---:|---:|:-:|")
    for task, batch, label, field, higher, target in ROWS:
        v = {p: med(p, task, batch, field) for p in PEERS}
        if v["this"] is None:
            continue
        ratio = {p: (v["this"] / v[p] if v[p] else None) for p in PEERS[1:]}
        fmt = lambda x: "-" if x is None else f"{x:.1f}"
        rfmt = lambda x: "-" if x is None else f"{x:.2f}x"
        met = "-"
        if target is not None and ratio["tensorflow"] is not None:
            ok = ratio["tensorflow"] >= target if higher else ratio["tensorflow"] <= target
            met = "yes" if ok else "no"
        tgt = "-" if target is None else (">= " if higher else "<= ") + f"{target}x"
        out.append(f"| {label} | {fmt(v['this'])} | {fmt(v['tensorflow'])} | {fmt(v['pytorch'])} "
                   f"| {rfmt(ratio['tensorflow'])} | {rfmt(ratio['pytorch'])} | {tgt} | {met} |")
    out.append("\nRatios: images/s us/peer (higher is better); ms and seconds us/peer (lower is better).\n")
    out.append("## Peak memory (MiB, whole process, VmHWM / ru_maxrss)\n")
    out.append("| run | this | TensorFlow/Keras | PyTorch | this/TF | met (<= TF) |")
    out.append("|---|---:|---:|---:|---:|:-:|")
    for task, batch in MEM_ROWS:
        v = {p: med(p, task, batch, "peak_rss_mib") for p in PEERS}
        if v["this"] is None:
            continue
        r = v["this"] / v["tensorflow"] if v["tensorflow"] else None
        fmt = lambda x: "-" if x is None else f"{x:.0f}"
        met = "-" if r is None else ("yes" if r <= 1 else "no")
        out.append(f"| {task} batch {batch} | {fmt(v['this'])} | {fmt(v['tensorflow'])} "
                   f"| {fmt(v['pytorch'])} | {'-' if r is None else f'{r:.2f}x'} | {met} |")
    out.extend(runtimes_table(med))
    if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
        out.append("\n## Time per layer (this project, inference batch 32, `e2e infer --profile`)\n")
        with open(sys.argv[2]) as f:
            out.append(f.read())
    print("\n".join(out))


if __name__ == "__main__":
    main()
