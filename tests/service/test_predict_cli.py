"""`nnspec predict` input files, in-process and torch-free (fixture models from onnx_fixtures)."""

from typer.testing import CliRunner

from nnspec.cli import app


def test_short_csv_row_is_a_one_line_error(shared_repo, tmp_path):
    rows = tmp_path / "short.csv"
    rows.write_text("age,color,income\n30,red,1.5\n30,red\n")
    result = CliRunner().invoke(app, ["predict", "credit", str(rows), "--repo", str(shared_repo)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "short.csv:3: column 'income': missing" in result.output


def test_predict_takes_a_model_folder_and_uses_its_latest_version(repo, tmp_path):
    import json

    import onnx_fixtures as fx

    fx.publish(repo, "iris", seed=2)  # version 2, other weights
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}))
    by_folder = CliRunner().invoke(app, ["predict", str(repo / "iris"), str(rows), "--json"])
    by_name = CliRunner().invoke(app, ["predict", "iris/2", str(rows), "--repo", str(repo), "--json"])
    first = CliRunner().invoke(app, ["predict", "iris/1", str(rows), "--repo", str(repo), "--json"])
    assert by_folder.exit_code == 0, by_folder.output
    assert by_folder.stdout == by_name.stdout != first.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["predict", str(empty), str(rows)])
    assert result.exit_code == 2
    assert result.stderr == f"error: {empty}: not an exported model (no nnspec.json, no version folders)\n"


def test_models_lists_versions_task_and_test_metrics(repo, tmp_path):
    import json

    import onnx_fixtures as fx

    fx.publish(repo, "iris", seed=2)
    result = CliRunner().invoke(app, ["models", "--repo", str(repo), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["models"]}
    assert set(rows) == set(fx.MODELS)
    assert rows["iris"]["versions"] == [1, 2] and rows["iris"]["task"] == "classification"
    assert rows["housing"]["task"] == "regression"
    table = CliRunner().invoke(app, ["models", "--repo", str(repo)])
    assert table.exit_code == 0 and "iris" in table.stdout and "1, 2" in table.stdout
    missing = CliRunner().invoke(app, ["models", "--repo", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and missing.stderr == f"error: {tmp_path / 'nowhere'}: no such model repository\n"


def test_version_option():
    import nnspec

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"nnspec {nnspec.__version__}\n"
