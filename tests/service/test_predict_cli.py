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
