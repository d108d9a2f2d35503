"""Export tolerance scales with the outputs (atol + rtol·|torch|), and a failed export never loses the run."""

import json

import numpy as np
import pandas as pd
import pytest


def _prices(folder, n=300):
    """A regression target around 4000 (a house price in hundreds, say): linear in two columns plus noise."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    frame = pd.DataFrame({"rooms": x1.round(3), "area": (x2 * 30 + 120).round(1),
                          "price": (4000 + 300 * x1 + 8 * (x2 * 30) + rng.normal(scale=20, size=n)).round(1)})
    path = folder / "prices.csv"
    frame.to_csv(path, index=False)
    return path


def _spec(h, folder, **changes):
    return h.spec_file(folder, h.base_spec(**h.merge({
        "name": "prices", "task": "regression",
        "data": {"source": {"type": "csv", "path": str(_prices(folder)), "target": "price"},
                 "split": {"validation": 0.2, "test": 0.2, "stratify": False, "seed": 0},
                 "preprocessing": {"normalize_target": True}},
        "model": {"layers": [{"type": "linear", "out_features": 16}, {"type": "relu"},
                             {"type": "linear", "out_features": 1}]},
        "training": {"epochs": 3, "loss": {"type": "mse"}},
    }, changes)))


@pytest.mark.slow
def test_a_target_around_4000_exports_with_the_defaults(h, tmp_path):
    result = h.cli(["train", _spec(h, tmp_path), "--runs-dir", tmp_path / "runs", "--repo", tmp_path / "models",
                    "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["export"]["version"] == 1
    # float32 rounding at ~4000 is about 5e-4: beyond atol alone (1e-4), inside atol + rtol·|4000|
    assert 1e-4 < max(summary["export"]["parity"].values()) <= 1e-4 + 1e-5 * 6000


@pytest.mark.slow
def test_a_failed_export_keeps_the_run_and_export_set_retries(h, tmp_path):
    spec = _spec(h, tmp_path, export={"atol": 1e-9, "rtol": 0.0})
    result = h.cli(["train", spec, "--runs-dir", tmp_path / "runs", "--repo", tmp_path / "models", "--quiet"])
    assert result.exit_code == 1, result.output
    run_dir = next((tmp_path / "runs" / "prices").iterdir())
    assert "test" in result.stdout and f"run directory: {run_dir}" in result.stdout  # the metrics come first
    assert "error: export failed: ONNX and PyTorch disagree beyond export.atol=1e-09 + export.rtol=0.0" in result.stderr
    assert f"retry the export with: nnspec export {run_dir}" in result.stderr
    assert not (tmp_path / "models" / "prices" / "1").exists()

    refused = h.cli(["export", run_dir, "--repo", tmp_path / "models", "--set", "training.epochs=1"])
    assert refused.exit_code == 2 and "a trained run can change only export.* and serving.*" in refused.stderr
    retried = h.cli(["export", run_dir, "--repo", tmp_path / "models", "--set", "export.atol=1e-4",
                     "--set", "export.rtol=1e-5"])
    assert retried.exit_code == 0, retried.output
    assert retried.stdout.startswith(f"exported {tmp_path / 'models' / 'prices' / '1'} (version 1;")
