"""`nnspec init`: drafted specs validate as written and train to better than chance; bad input is one line."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nnspec.cli import app
from nnspec.scaffold import batch_size_for, infer_task, model_name


def _cli(*args, cwd):
    old = os.getcwd()
    os.chdir(cwd)  # the drafted spec and its run land in the test's folder
    try:
        return CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)


def _train(tmp_path, spec, epochs):
    result = _cli("train", spec, "--set", f"training.epochs={epochs}", "--no-export", "--json", "--quiet",
                  "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_task_names_and_batch_sizes():
    assert infer_task(np.array(["a", "b", "a"])) == ("binary", 2)
    assert infer_task(np.array([0, 1, 2, 1])) == ("classification", 3)
    assert infer_task(np.array([1.0, 2.0, 3.0, np.nan])) == ("classification", 3)
    assert infer_task(np.linspace(0, 1, 50)) == ("regression", 50)
    assert infer_task(np.arange(100)) == ("regression", 100)
    assert model_name(__import__("pathlib").Path("Penguins Size.csv")) == "penguins-size"
    assert [batch_size_for(n) for n in (10, 1000, 10_000, 1_000_000)] == [16, 32, 128, 128]


@pytest.mark.slow
def test_init_on_a_csv_writes_a_spec_that_trains(tmp_path):
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=300), rng.normal(size=300)
    color = rng.choice(["red", "green", "blue"], size=300)
    label = np.where(x1 + (color == "red") > 0.5, "yes", np.where(x2 > 0, "maybe", "no"))
    pd.DataFrame({"x1": x1, "color": color, "x2": x2, "answer": label}).to_csv(tmp_path / "My Data.csv", index=False)
    result = _cli("init", "My Data.csv", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "task: classification (3 classes)" in result.stdout
    assert "features: x1 (numeric), color (categorical), x2 (numeric)" in result.stdout
    assert result.stdout.endswith("wrote my-data.yaml; next: nnspec train my-data.yaml\n")
    text = (tmp_path / "my-data.yaml").read_text()
    assert 'source: {type: csv, path: "My Data.csv", target: "answer"}' in text and "out_features: 3}" in text
    summary = _train(tmp_path, "my-data.yaml", 12)
    assert summary["test"]["accuracy"] > 0.6  # chance is about 1/3
    again = _cli("init", "My Data.csv", cwd=tmp_path)
    assert again.exit_code == 2 and again.stderr == "error: my-data.yaml exists; choose another --out or add --force\n"


@pytest.mark.slow
def test_init_on_an_npz_of_signals_and_on_an_image_folder(tmp_path):
    rng = np.random.default_rng(1)
    t = np.linspace(0, 1, 48)
    y = rng.integers(0, 3, 240)
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t[None]) + 0.3 * rng.normal(size=(240, 48))
    np.savez(tmp_path / "waves.npz", x=x.astype(np.float32), y=y)
    result = _cli("init", "waves.npz", "-o", "waves.yaml", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "read as a signal (channels, length)" in result.stdout
    assert "input: {shape: [1, 48]}" in (tmp_path / "waves.yaml").read_text()
    assert _train(tmp_path, "waves.yaml", 8)["test"]["accuracy"] > 0.6  # chance 1/3

    from PIL import Image

    for label in ("across", "down"):
        (tmp_path / "pics" / label).mkdir(parents=True)
        for i in range(20):
            a = rng.integers(0, 60, (18, 18)).astype(np.uint8)
            if label == "across":
                a[7:11, :] = 250
            else:
                a[:, 7:11] = 250
            Image.fromarray(a).save(tmp_path / "pics" / label / f"{i}.png")
    result = _cli("init", "pics", "-o", "pics.yaml", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "task: binary (2 classes)" in result.stdout and "read as grayscale 18x18" in result.stdout
    assert _train(tmp_path, "pics.yaml", 10)["test"]["accuracy"] > 0.7  # chance 1/2


def test_init_refuses_in_one_line(tmp_path):
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "notes.txt").write_text("hello")
    cases = [(("init", "t.csv", "--target", "c"), "error: no column 'c' in t.csv; columns: a, b\n"),
             (("init", "missing.csv"), "error: missing.csv does not exist\n"),
             (("init", "notes.txt"), "error: notes.txt: nnspec init reads .csv, .parquet, .npz files or an image folder\n"),
             (("init", "t.csv", "--task", "clustering"), "--task must be one of classification, binary, regression, got 'clustering'\n")]
    for args, message in cases:
        result = _cli(*args, cwd=tmp_path)
        assert result.exit_code == 2 and result.stderr == message, (args, result.output)


def test_init_quotes_names_creates_folders_and_refuses_non_archives(tmp_path):
    pd.DataFrame({"a": [1.5, 2.5] * 10, "kind, final": ["x", "y"] * 10}).to_csv(tmp_path / "has #hash.csv", index=False)
    result = _cli("init", "has #hash.csv", "--target", "kind, final", "-o", "sub/dir/x.yaml", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert 'path: "../../has #hash.csv", target: "kind, final"' in (tmp_path / "sub" / "dir" / "x.yaml").read_text()
    np.save(tmp_path / "one.npy", np.zeros((3, 2)))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    cases = [(("init", "one.npz"), "error: one.npz holds one array, not an .npz archive of named arrays (np.savez writes one)\n"),
             (("init", "has #hash.csv", "--target", "kind, final", "--task", "regression", "--force", "-o", "r.yaml"),
              "error: --task regression: the target is not numeric\n")]
    for args, message in cases:
        refused = _cli(*args, cwd=tmp_path)
        assert refused.exit_code == 2 and refused.stderr == message, (args, refused.output)
