"""What both peers share: the command line, the timing loop and the JSON line they print.

Same measurements as this project's `e2e` binary (benches/src/main.rs): two warm-up calls, then
repeat until `--seconds` passed and `--min-iters` ran; the median time per batch; peak memory is
the process's ru_maxrss (Linux VmHWM)."""

import argparse
import json
import resource
import time

TASKS = ["infer", "train-a", "train-b", "train-c"]


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("task", choices=TASKS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--min-iters", type=int, default=3)
    return p.parse_args()


def measure(args, step):
    for _ in range(2):
        step()
    times, start = [], time.perf_counter()
    while len(times) < args.min_iters or time.perf_counter() - start < args.seconds:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], len(times)


def report(peer, args, t, iters):
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "peer": peer,
        "task": args.task.replace("-", ""),
        "batch": args.batch,
        "size": args.size,
        "iters": iters,
        "ms_per_batch": t * 1e3,
        "images_per_s": args.batch / t,
        "peak_rss_mib": peak_kib / 1024.0,
    }), flush=True)
