"""The Python side of `cargo bench -p swipebot-train --bench quality`.

`dataset`: writes two look-alike classes of Fashion-MNIST (Debian's `dataset-fashion-mnist`, read
from /usr/share/datasets/fashion-mnist) as PNG files into `OUT/like/` and `OUT/nope/`, the layout
`train --data` reads: T-shirt/top (class 0) as LIKE and shirt (class 6) as NOPE, the first
`--per-class` images of each class of the training file.

`baseline`: the small CNN a PyTorch user would write first (two 3x3 convolutions with max pooling, a
hidden layer of 128 with dropout, Adam at 1e-3, no augmentation), trained on the training files the
split file lists and evaluated on its validation files, each image resized to `--input-size` (the
same photos `train` sees, grayscale). Writes the LIKE probabilities of the validation files, in
their order, as JSON to `--scores`, and prints one line: `baseline seconds <s> accuracy <a>`.
"""

import argparse
import gzip
import json
import os
import time

import numpy as np
from PIL import Image

FASHION = "/usr/share/datasets/fashion-mnist"
TSHIRT, SHIRT = 0, 6


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def dataset(args):
    images = read_idx(os.path.join(FASHION, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(FASHION, "train-labels-idx1-ubyte.gz"))
    for name, cls in (("like", TSHIRT), ("nope", SHIRT)):
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        picked = np.nonzero(labels == cls)[0][: args.per_class]
        for i, idx in enumerate(picked):
            Image.fromarray(images[idx], "L").save(os.path.join(folder, f"{name}-{i:05}.png"))
    print(f"wrote {2 * args.per_class} images to {args.out}")


def load(paths, size):
    out = np.empty((len(paths), 1, size, size), dtype=np.float32)
    for i, p in enumerate(paths):
        img = Image.open(p).convert("L").resize((size, size), Image.BILINEAR)
        out[i, 0] = np.asarray(img, dtype=np.float32) / 255.0
    return out


def baseline(args):
    import torch
    import torch.nn as nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(args.split) as f:
        split = json.load(f)
    xt, yt = load(split["train"], args.input_size), np.array(split["train_like"], dtype=np.int64)
    xv, yv = load(split["val"], args.input_size), np.array(split["val_like"], dtype=np.int64)
    mean, std = xt.mean(), xt.std()
    xt, xv = torch.from_numpy((xt - mean) / std), torch.from_numpy((xv - mean) / std)
    yt, yv = torch.from_numpy(yt), torch.from_numpy(yv)
    side = args.input_size // 4
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 2),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    started = time.perf_counter()
    for _ in range(args.epochs):
        net.train()
        order = torch.randperm(len(xt))
        for b in range(0, len(xt), args.batch_size):
            idx = order[b:b + args.batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        p = torch.cat([net(xv[b:b + 256]).softmax(1)[:, 1] for b in range(0, len(xv), 256)])
    seconds = time.perf_counter() - started
    accuracy = float(((p >= 0.5).long() == yv).float().mean())
    with open(args.scores, "w") as f:
        json.dump([float(v) for v in p], f)
    print(f"baseline seconds {seconds:.1f} accuracy {accuracy:.4f}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dataset")
    d.add_argument("--out", required=True)
    d.add_argument("--per-class", type=int, default=1500)
    b = sub.add_parser("baseline")
    b.add_argument("--split", required=True, help="JSON: train, train_like, val, val_like")
    b.add_argument("--scores", required=True)
    b.add_argument("--input-size", type=int, default=64)
    b.add_argument("--epochs", type=int, default=10)
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    {"dataset": dataset, "baseline": baseline}[args.cmd](args)


if __name__ == "__main__":
    main()
