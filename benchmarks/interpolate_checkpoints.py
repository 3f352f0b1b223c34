"""Weight-space interpolation of two checkpoints of one architecture (WiSE-FT): a fine-tuned
model mixed back towards its base keeps much of what the fine-tune gained and less of what it
lost elsewhere.

    python benchmarks/interpolate_checkpoints.py BASE.pt TUNED.pt --alpha 0.5 --out MIX.pt

``alpha`` is the fine-tuned model's share (1: TUNED unchanged, 0: BASE). Float tensors are
mixed in float32; others come from TUNED. The checkpoint metadata (.json beside TUNED) is
copied with ``interpolation`` recorded and the checksum of the new file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base")
    ap.add_argument("tuned")
    ap.add_argument("--alpha", type=float, required=True, help="share of TUNED, in [0, 1]")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if not 0 <= a.alpha <= 1:
        ap.error("--alpha must be in [0, 1]")
    base = torch.load(a.base, map_location="cpu", weights_only=True)
    tuned = torch.load(a.tuned, map_location="cpu", weights_only=True)
    if base.keys() != tuned.keys():
        ap.error("the checkpoints have different keys")
    out = {}
    for k, v in tuned.items():
        if v.is_floating_point():
            out[k] = (1 - a.alpha) * base[k].float() + a.alpha * v.float()
        else:
            out[k] = v
    dst = Path(a.out)
    torch.save(out, dst)
    side_src = Path(a.tuned).with_suffix(".json")
    side = json.loads(side_src.read_text()) if side_src.exists() else {}
    side.update(interpolation={"base": str(a.base), "tuned": str(a.tuned), "alpha": a.alpha},
                sha256=hashlib.sha256(dst.read_bytes()).hexdigest(), size=dst.stat().st_size)
    dst.with_suffix(".json").write_text(json.dumps(side, indent=1))
    print(f"{dst}: {a.alpha} x {a.tuned} + {1 - a.alpha:g} x {a.base}")


if __name__ == "__main__":
    main()
