"""Reference int8 model for `cargo bench --bench int8`: the same fp32 model quantized by ONNX
Runtime's own static quantizer (`onnxruntime.quantization.quantize_static`: QDQ format, per-channel
int8 weights, uint8 activations, MinMax calibration), so the project's int8 export is compared with
what a user would get from Python.

Calibration photos: `--count` images spread evenly over the sorted `like/` and `nope/` files of
`--data`, prepared as swipebot prepares them (`baseline.prepare`). The swipebot metadata of the
fp32 model is kept, with `swipebot.precision` set to `int8`, so the daemon's scorer loads it.

    python benches/int8_reference.py --model fp32.onnx --data DIR --out ref.onnx --square 256 --crop 224
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baseline import prepare  # noqa: E402


class Photos(CalibrationDataReader):
    """One photo a batch, as `quantize_static` asks for them."""

    def __init__(self, name, paths, channels, square, crop):
        self.items = iter([{name: prepare(p, channels, square, crop)[np.newaxis]} for p in paths])

    def get_next(self):
        return next(self.items, None)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=256)
    p.add_argument("--channels", type=int, choices=(1, 3), default=1)
    p.add_argument("--square", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    args = p.parse_args()

    files = sorted(
        os.path.join(root, f)
        for cls in ("like", "nope")
        for root, _, names in os.walk(os.path.join(args.data, cls))
        for f in names
        if f.lower().endswith((".jpg", ".jpeg", ".png"))
    )
    step = max(1, len(files) // args.count)
    picked = files[::step][: args.count]
    model = onnx.load(args.model)
    name = model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(args.model, pre)
        quantize_static(
            pre,
            args.out,
            Photos(name, picked, args.channels, args.square, args.crop),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    out = onnx.load(args.out)
    props = {q.key: q.value for q in model.metadata_props}
    props["swipebot.precision"] = "int8"
    del out.metadata_props[:]
    for k, v in props.items():
        entry = out.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(out, args.out)
    print(f"{len(picked)} calibration photos", flush=True)


if __name__ == "__main__":
    main()
