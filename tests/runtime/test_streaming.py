"""Image folders streamed from disk (`in_memory: false`) train, evaluate and export exactly like resident ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nnspec.compiler.data as source_data
import nnspec.runtime.data as runtime_data
from nnspec.compiler.data import DataError
from nnspec.runtime.data import ImageFiles, Split, StreamedSplit, prepare_data, stream
from nnspec.runtime.evaluate import evaluate_run
from nnspec.runtime.export import export_run
from nnspec.runtime.train import train

pytestmark = pytest.mark.slow  # each test trains streamed and resident runs


@pytest.fixture(autouse=True)
def _no_workers(monkeypatch):
    monkeypatch.setattr(runtime_data, "NUM_WORKERS", 0)  # decode in the test process: fast and deterministic


def _spec(h, tmp_path, in_memory, **training):
    return h.load(tmp_path, {
        "version": 1, "name": "patterns", "task": "classification",
        "data": {"source": {"type": "image_folder", "path": "images", "image_size": 12, "color": "grayscale", "in_memory": in_memory},
                 "split": {"validation": 0.2, "test": 0.2, "stratify": True}},
        "model": {"layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "batch_norm"}, {"type": "relu"},
                             {"type": "global_avg_pool"}, {"type": "linear", "out_features": 3}]},
        "training": {"epochs": 3, "batch_size": 7, "loss": {"type": "cross_entropy"}, "optimizer": {"type": "adam", "lr": 0.03},
                     "augmentation": [{"type": "random_shift", "max_shift": 1}], "shuffle": True, "deterministic": True,
                     "seed": 3, **training},
    }, name=f"spec-{in_memory}.yaml")


@pytest.fixture(scope="module")
def runs(h, tmp_path_factory):
    """The same spec trained resident and streamed, once for the module: {in_memory: TrainResult}."""
    folder = tmp_path_factory.mktemp("streaming")
    h.image_folder(folder / "images", per_class=12, size=16)  # 36 PNGs, resized to 12x12
    with pytest.MonkeyPatch.context() as patch:  # the autouse _no_workers is function-scoped: set it here too
        patch.setattr(runtime_data, "NUM_WORKERS", 0)
        return {flag: train(_spec(h, folder, flag), runs_dir=folder / f"runs-{flag}", device="cpu") for flag in (True, False)}


def test_streamed_training_matches_the_resident_run(runs):
    resident, streamed = runs[True], runs[False]
    assert isinstance(resident.data.train, Split) and isinstance(streamed.data.train, StreamedSplit)
    assert streamed.data.raw.x is None and len(streamed.data.raw.files) == 36
    # the same exact per-channel statistics (float64 sums of integer pixels) ...
    np.testing.assert_array_equal(resident.data.x_norm.shift, streamed.data.x_norm.shift)
    np.testing.assert_array_equal(resident.data.x_norm.scale, streamed.data.x_norm.scale)
    # ... the same normalized inputs and labels in every split ...
    for name in ("train", "validation", "test"):
        a, b = getattr(resident.data, name), getattr(streamed.data, name)
        assert torch.equal(a.x, torch.cat(list(b.inputs(5)))) and torch.equal(a.y, b.y), name
    # ... and so, seeded and deterministic with the same batches, the same training, bit for bit
    drop = ("seconds", "train_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in resident.history] == \
           [{k: v for k, v in r.items() if k not in drop} for r in streamed.history]
    assert resident.summary["test"] == streamed.summary["test"]
    for key, value in resident.model.state_dict().items():
        assert torch.equal(value, streamed.model.state_dict()[key]), key
    assert (streamed.run_dir / "confusion.png").is_file()


def test_a_streamed_run_evaluates_exports_and_answers_pngs(h, tmp_path, runs):
    from PIL import Image

    streamed = runs[False]
    assert evaluate_run(streamed.run_dir, "test") == pytest.approx(streamed.summary["test"])
    exported = export_run(streamed.run_dir, tmp_path / "models")
    manifest = json.loads((exported.path / "nnspec.json").read_text())
    assert manifest["parity"]["rows"] == 8 and manifest["image"] == {"size": [12, 12], "color": "grayscale"}  # 8 validation images
    resident = export_run(runs[True].run_dir, tmp_path / "models-resident")
    assert json.loads((resident.path / "nnspec.json").read_text())["parity"]["rows"] == 8

    rng = np.random.default_rng(7)
    files = []
    for kind in h.IMAGE_CLASSES:
        Image.fromarray(h.image_pattern(kind, 16, rng), mode="L").save(tmp_path / f"{kind}.png")
        files.append(tmp_path / f"{kind}.png")
    proc = h.run_torch_free(["predict", exported.path, *files, "--json"])
    assert proc.returncode == 0, proc.stderr
    predictions = json.loads(proc.stdout)["predictions"]
    assert len(predictions) == 3 and all(p["label"] in h.IMAGE_CLASSES for p in predictions)


def test_auto_streams_only_above_the_limit(h, tmp_path, monkeypatch):
    h.image_folder(tmp_path / "images", per_class=6)
    spec = _spec(h, tmp_path, "auto")
    assert spec.data.source.load(tmp_path, "classification").files is None  # 18 small images: in memory
    monkeypatch.setattr(source_data, "IN_MEMORY_LIMIT", 18 * 12 * 12 * 4 - 1)  # one byte short of their float32 pixels
    raw = spec.data.source.load(tmp_path, "classification")
    assert raw.files is not None and raw.x is None and raw.y.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert isinstance(prepare_data(spec).train, StreamedSplit)


def test_in_memory_is_a_strict_choice(h, tmp_path):
    from nnspec.compiler.errors import SpecError

    h.image_folder(tmp_path / "images", per_class=3)
    with pytest.raises(SpecError, match="in_memory"):
        _spec(h, tmp_path, "yes")


def test_an_unreadable_streamed_image_fails_with_the_in_memory_one_line_error(h, tmp_path):
    root = h.image_folder(tmp_path / "images", per_class=3)
    (root / "vertical" / "broken.png").write_bytes(b"this is not a PNG file")
    for flag in (True, False):
        spec = h.spec_file(tmp_path, _raw_spec(h, flag), name=f"spec-{flag}.yaml")
        result = h.cli(["train", spec, "--runs-dir", tmp_path / "runs", "--no-export", "--quiet"])
        assert result.exit_code == 2, (result.output, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "broken.png: not a decodable image (UnidentifiedImageError)" in lines[0], result.stderr


def _raw_spec(h, in_memory) -> dict:
    return h.base_spec(name="images", data={"source": {"type": "image_folder", "path": "images", "image_size": 16,
                                                       "color": "grayscale", "in_memory": in_memory},
                                            "split": {"validation": 0.2, "test": 0.2, "stratify": False}},
                       model={"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3}]})


def test_a_worker_process_error_keeps_its_one_line_message(h, tmp_path, monkeypatch):
    root = h.image_folder(tmp_path / "images", per_class=1)
    (root / "vertical" / "broken.png").write_bytes(b"not an image")
    monkeypatch.setattr(runtime_data, "NUM_WORKERS", 1)
    files = sorted(root.rglob("*.png"))
    images = ImageFiles(files, {"size": [8, 8], "color": "grayscale"}, (1, 8, 8), None)
    with pytest.raises(DataError) as err:
        list(stream(images, [list(range(len(files)))]))
    assert str(err.value) == f"{root / 'vertical' / 'broken.png'}: not a decodable image (UnidentifiedImageError)"
