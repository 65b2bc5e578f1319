"""PyTorch side of `cargo bench -p swipebot-train --bench train_throughput`: the same GoogLeNet
(BVLC deploy layout, LRN, ceil-mode pooling, input normalisation), the same input size, batch,
thread count, loss and optimizer (SGD, momentum 0.9, weight decay 2e-4), timed the same way.
`--channels-last` puts weights and input in the NHWC layout, as `train` does; `--bf16` runs the forward
pass under CPU autocast in bf16 (the loss in fp32), PyTorch's mixed precision.
Prints one line: `pytorch images/s <value>`."""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

INCEPTIONS = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.b1 = nn.Conv2d(cin, c1, 1)
        self.b2r, self.b2 = nn.Conv2d(cin, c3r, 1), nn.Conv2d(c3r, c3, 3, padding=1)
        self.b3r, self.b3 = nn.Conv2d(cin, c5r, 1), nn.Conv2d(c5r, c5, 5, padding=2)
        self.b4 = nn.Conv2d(cin, pp, 1)
        self.out = c1 + c3 + c5 + pp

    def forward(self, x):
        return torch.cat([
            F.relu(self.b1(x)),
            F.relu(self.b2(F.relu(self.b2r(x)))),
            F.relu(self.b3(F.relu(self.b3r(x)))),
            F.relu(self.b4(F.max_pool2d(x, 3, 1, 1))),
        ], 1)


class GoogLeNet(nn.Module):
    def __init__(self, channels, size):
        super().__init__()
        self.register_buffer("mean", torch.full((1, channels, size, size), 127.0))
        self.register_buffer("scale", torch.full((1, channels, 1, 1), 1 / 64))
        self.conv1 = nn.Conv2d(channels, 64, 7, 2, 3)
        self.conv2r = nn.Conv2d(64, 64, 1)
        self.conv2 = nn.Conv2d(64, 192, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        cin, blocks = 192, {}
        for name, spec in INCEPTIONS.items():
            blocks[name] = Inception(cin, *spec)
            cin = blocks[name].out
        self.inc = nn.ModuleDict(blocks)
        self.fc = nn.Linear(cin, 2)

    def forward(self, x):
        pool = lambda t: F.max_pool2d(t, 3, 2, ceil_mode=True)
        x = (x - self.mean) * self.scale
        x = self.lrn(pool(F.relu(self.conv1(x))))
        x = pool(self.lrn(F.relu(self.conv2(F.relu(self.conv2r(x))))))
        for name in ("3a", "3b"):
            x = self.inc[name](x)
        x = pool(x)
        for name in ("4a", "4b", "4c", "4d", "4e"):
            x = self.inc[name](x)
        x = pool(x)
        for name in ("5a", "5b"):
            x = self.inc[name](x)
        x = F.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1), 0.4, self.training)
        return self.fc(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--channels-last", action="store_true", help="NHWC layout for weights and input")
    p.add_argument("--bf16", action="store_true", help="forward pass under CPU autocast in bf16")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = GoogLeNet(a.channels, a.size).train()
    x = torch.rand(a.batch, a.channels, a.size, a.size) * 255
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)
    y = torch.randint(0, 2, (a.batch,))

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            out = net(x)
        loss = F.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(a.iters):
        step()
    elapsed = time.perf_counter() - start
    print(f"pytorch images/s {a.iters * a.batch / elapsed:.2f}")


if __name__ == "__main__":
    main()
