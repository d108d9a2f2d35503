#!/usr/bin/env bash
# Trains the digits CNN on CUDA with bf16 autocast and on the CPU, and prints test accuracy and
# seconds per epoch side by side. Run it on a machine with a GPU:  bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Its own venv: the Makefile's .venv holds the CPU wheel, which would report no CUDA device.
PY=${PY:-.venv-gpu/bin/python}
[ -x "$PY" ] || { python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -q "${TORCH:-torch==2.13.0}" && .venv-gpu/bin/pip install -q -e ".[train]"; PY=.venv-gpu/bin/python; }
"$PY" - <<'PY'
import torch
from nnspec.compiler import load_spec
from nnspec.runtime.train import train

print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}",
      f"({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
runs = [("cpu", "fp32")] + ([("cuda", "bf16"), ("cuda", "fp32")] if torch.cuda.is_available() else [])
for device, precision in runs:
    spec = load_spec("specs/digits_cnn.yaml", [f"training.device={device}", f"training.precision={precision}"])
    result = train(spec, write=False)
    rows = result.history
    per_epoch = sum(r["seconds"] for r in rows[1:]) / max(len(rows) - 1, 1)  # epoch 1 includes warm-up
    print(f"{device:5s} {precision}: test accuracy {result.summary['test']['accuracy']:.4f}, "
          f"{per_epoch:.3f} s/epoch over {len(rows)} epochs")
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device: only the CPU run above was made")
PY
