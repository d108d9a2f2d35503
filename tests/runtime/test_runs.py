"""`nnspec runs` and `nnspec runs diff` over real run directories: finished, stopped early, interrupted."""

from __future__ import annotations

import json

import pytest

from nnspec.runtime.runs import flatten


def test_flatten_names_leaves_as_set_takes_them():
    tree = {"training": {"optimizer": {"lr": 0.01}, "augmentation": []},
            "model": {"layers": [{"type": "linear", "out_features": 8}, {"type": "relu"}]}, "x": None}
    assert flatten(tree) == {"training.optimizer.lr": 0.01, "training.augmentation": [], "model.layers.0.type": "linear",
                             "model.layers.0.out_features": 8, "model.layers.1.type": "relu", "x": None}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Runs of one tiny spec: finished and exported (lr 0.01), finished (lr 0.02), stopped early, interrupted after
    epoch 2, and interrupted before any epoch ended."""
    import runtime_helpers as h

    from nnspec.runtime.export import export_run
    from nnspec.runtime.rundir import create_run_dir
    from nnspec.runtime.train import TrainingInterrupted, train

    tmp = tmp_path_factory.mktemp("runs-cli")
    runs = tmp / "runs"
    made = {}
    made["exported"] = train(h.load(tmp, h.base_spec()), runs_dir=runs).run_dir
    export_run(made["exported"], tmp / "models")
    made["faster"] = train(h.load(tmp, h.base_spec(training={"optimizer": {"type": "adam", "lr": 0.02}})), runs_dir=runs).run_dir
    # min_delta beyond any change: epoch 1 is the best, epoch 2 exhausts the patience
    stopping = {"epochs": 6, "early_stopping": {"monitor": "val_loss", "patience": 1, "min_delta": 100.0}}
    made["early"] = train(h.load(tmp, h.base_spec(training=stopping)), runs_dir=runs).run_dir

    def ctrl_c(row, epochs):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as stopped:
        train(h.load(tmp, h.base_spec(training={"epochs": 5})), runs_dir=runs, on_epoch=ctrl_c)
    made["interrupted"] = stopped.value.run_dir
    spec = h.load(tmp, h.base_spec())
    made["no_epoch"] = create_run_dir(runs, spec, spec.data.describe(tmp, spec.task))  # stopped before epoch 1 ended
    return runs, made


@pytest.mark.slow
def test_runs_lists_finished_stopped_and_interrupted_runs(h, runs_dir):
    runs, made = runs_dir
    result = h.cli(["runs", "--runs-dir", runs, "--json"])
    assert result.exit_code == 0, result.output
    listed = {r["path"]: r for r in json.loads(result.stdout)["runs"]}
    assert set(listed) == {str(p) for p in made.values()}
    exported, early, interrupted = listed[str(made["exported"])], listed[str(made["early"])], listed[str(made["interrupted"])]
    assert (exported["status"], exported["epochs_run"], exported["epochs_planned"]) == ("finished", 3, 3)
    assert [e["version"] for e in exported["exports"]] == [1]
    summary = json.loads((made["exported"] / "summary.json").read_text())
    assert exported["test"] == summary["test"] and exported["monitor"] == "val_loss"
    assert (early["status"], early["epochs_run"], early["epochs_planned"], early["best_epoch"]) == ("stopped early", 2, 6, 1)
    assert (interrupted["status"], interrupted["epochs_run"], interrupted["epochs_planned"]) == ("interrupted", 2, 5)
    assert interrupted["resume"] == f"nnspec train --resume {made['interrupted']}" and interrupted["test"] == {}
    no_epoch = listed[str(made["no_epoch"])]
    assert (no_epoch["status"], no_epoch["epochs_run"], no_epoch["resume"]) == ("interrupted", 0, None)

    table = h.cli(["runs", "--runs-dir", runs]).stdout
    rows = {line.split()[1]: line for line in table.splitlines() if line.startswith("│ t/")}
    assert "finished" in rows[f"t/{made['exported'].name}"] and "v1" in rows[f"t/{made['exported'].name}"]
    assert "stopped early" in rows[f"t/{made['early'].name}"] and "2/6" in rows[f"t/{made['early'].name}"]
    assert "interrupted" in rows[f"t/{made['interrupted'].name}"]
    assert (f"t/{made['interrupted'].name} interrupted after epoch 2; resume with: nnspec train --resume {made['interrupted']}"
            in table.splitlines())
    assert f"t/{made['no_epoch'].name} interrupted before its first epoch ended; nothing to resume" in table.splitlines()


@pytest.mark.slow
def test_runs_sorts_best_first_and_names_unknown_metrics(h, runs_dir):
    runs, made = runs_dir
    result = h.cli(["runs", "--runs-dir", runs, "--sort", "val_loss", "--json"])
    listed = json.loads(result.stdout)["runs"]
    assert listed[-1]["path"] == str(made["no_epoch"])  # no validation loss: last
    values = [r["validation"]["loss"] for r in listed[:-1]]
    assert values == sorted(values)
    result = h.cli(["runs", "--runs-dir", runs, "--sort", "test_accuracy", "--json"])
    listed = json.loads(result.stdout)["runs"]
    assert {r["path"] for r in listed[-2:]} == {str(made["interrupted"]), str(made["no_epoch"])}  # no test metric: last
    accuracies = [r["test"]["accuracy"] for r in listed[:-2]]
    assert accuracies == sorted(accuracies, reverse=True)
    result = h.cli(["runs", "--runs-dir", runs, "--sort", "val_nothing"])
    assert result.exit_code == 2 and result.stderr.startswith("error: --sort val_nothing: no run has it; choose from ")


@pytest.mark.slow
def test_runs_diff_shows_the_changed_learning_rate(h, runs_dir):
    runs, made = runs_dir
    a, b = made["exported"], made["faster"]
    result = h.cli(["runs", "diff", a, f"t/{b.name}", "--runs-dir", runs])  # a path, and NAME/STAMP under --runs-dir
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "spec (A -> B):" in lines and "  training.optimizer.lr: 0.01 -> 0.02" in lines
    assert [line for line in lines if line.startswith("  training.")] == ["  training.optimizer.lr: 0.01 -> 0.02"]
    old, new = (json.loads((run / "summary.json").read_text())["test"]["accuracy"] for run in (a, b))
    assert f"  test_accuracy: {old:.4g} -> {new:.4g} ({new - old:+.4g})" in lines
    changes = json.loads(h.cli(["runs", "diff", a, b, "--json"]).stdout)
    assert changes["spec"] == {"training.optimizer.lr": ["0.01", "0.02"]}
    result = h.cli(["runs", "diff", a, runs / "nowhere"])
    assert result.exit_code == 2 and "not a run directory" in result.stderr


@pytest.mark.slow
def test_runs_is_torch_free(h, runs_dir):
    runs, made = runs_dir
    proc = h.run_torch_free(["runs", "--runs-dir", runs, "--sort", "test_accuracy"])
    assert proc.returncode == 0, proc.stderr
    assert f"t/{made['early'].name}" in proc.stdout
    proc = h.run_torch_free(["runs", "diff", made["exported"], made["early"]])
    assert proc.returncode == 0 and "  training.epochs: 3 -> 6" in proc.stdout.splitlines(), proc.stdout + proc.stderr
