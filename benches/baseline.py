"""Python baseline for `cargo bench --bench throughput`: the same photos through the same model,
the way a typical Python script would do it (Pillow + numpy + onnxruntime, one thread of Python,
decode then infer, batch after batch).

Preprocessing follows swipebot's recipe: decode, apply the EXIF orientation, convert to grayscale
(Pillow 'L') or RGB, take the central square and resize it to `square` x `square` with a bilinear
filter, crop the centre `crop` x `crop`, planar float32 in 0..255 (NCHW).

Prints one JSON object on stdout: photos per second (median over the repeats) for the full
pipeline, for decode + resize alone and for inference alone on already-decoded tensors.

With --serve it instead prints `ready` and then, for each line `full`, `decode` or `inference` read
on stdin, runs that once and prints the seconds it took: the Rust bench drives it this way so that
its own runs and the Python ones alternate and see the same machine load.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def prepare(path, channels, square, crop):
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img = img.convert("L" if channels == 1 else "RGB")
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        img = img.resize(
            (square, square), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
        )
        off = (square - crop) // 2
        img = img.crop((off, off, off + crop, off + crop))
        arr = np.asarray(img, dtype=np.float32)
    if channels == 1:
        return arr[np.newaxis, :, :]
    return arr.transpose(2, 0, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--photos", required=True, help="folder of JPEGs")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--channels", type=int, choices=(1, 3), default=1)
    p.add_argument("--square", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--serve", action="store_true", help="time one run per command read on stdin")
    p.add_argument(
        "--only",
        choices=("full",),
        help="run the full pipeline once and nothing else (no tensors kept): for measuring memory",
    )
    args = p.parse_args()

    paths = sorted(
        os.path.join(args.photos, f)
        for f in os.listdir(args.photos)
        if f.lower().endswith((".jpg", ".jpeg"))
    )
    if not paths:
        sys.exit(f"no JPEGs in {args.photos}")

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def pipeline():
        scores = []
        for start in range(0, len(paths), args.batch):
            batch = np.stack(
                [prepare(q, args.channels, args.square, args.crop) for q in paths[start : start + args.batch]]
            )
            scores.append(session.run(None, {input_name: batch})[0])
        return scores

    def decode_only():
        for q in paths:
            prepare(q, args.channels, args.square, args.crop)

    if args.only == "full":
        pipeline()
        return

    tensors = [
        np.stack([prepare(q, args.channels, args.square, args.crop) for q in paths[s : s + args.batch]])
        for s in range(0, len(paths), args.batch)
    ]

    def inference_only():
        for batch in tensors:
            session.run(None, {input_name: batch})

    runs = {"full": pipeline, "decode": decode_only, "inference": inference_only}
    if args.serve:
        print("ready", flush=True)
        for line in sys.stdin:
            fn = runs.get(line.strip())
            if fn is None:
                print(f"unknown command {line.strip()!r}", flush=True)
                continue
            t0 = time.perf_counter()
            fn()
            print(time.perf_counter() - t0, flush=True)
        return

    def rate(fn):
        for _ in range(args.warmup):
            fn()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return len(paths) / statistics.median(times)

    result = {
        "photos": len(paths),
        "threads": args.threads,
        "batch": args.batch,
        "onnxruntime": ort.__version__,
        "full": rate(pipeline),
        "decode": rate(decode_only),
        "inference": rate(inference_only),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
