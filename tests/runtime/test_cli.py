"""The command line's own paths: help for every command, and usage errors as one line (no traceback)."""

import pytest


@pytest.mark.parametrize("command", ["", "init", "validate", "summary", "schema", "train", "evaluate", "export", "serve", "predict", "models",
                                     "runs", "runs diff"])
def test_every_command_prints_its_help(h, command):
    result = h.cli([*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_train_usage_errors_are_one_line(h, tmp_path):
    result = h.cli(["train"])
    assert result.exit_code == 2 and result.stderr == "give a SPEC file, or --resume RUN_DIR\n"
    result = h.cli(["train", "--resume", tmp_path])
    assert result.exit_code == 2 and result.stderr == f"{tmp_path}: <spec>: not a run directory (no spec.yaml)\n"


def test_schema_to_an_unwritable_path_is_one_line(h, tmp_path):
    (tmp_path / "file").write_text("")
    result = h.cli(["schema", "-o", tmp_path / "file" / "schema.json"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot write {tmp_path / 'file' / 'schema.json'}")


def test_predict_with_a_folder_that_is_no_model_names_it(h, tmp_path):
    result = h.cli(["predict", tmp_path / "nowhere", tmp_path / "rows.csv"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'nowhere'}: not an exported model (no nnspec.json, no version folders)\n"


def test_serve_names_the_bad_option(h, tmp_path):
    result = h.cli(["serve", tmp_path, "--max-body-mb", "-1"])
    assert result.exit_code == 2 and result.stderr == "error: --max-body-mb: Input should be greater than 0\n"


def test_serve_refuses_a_port_outside_1_to_65535(h, tmp_path):
    for port in ("0", "99999"):
        result = h.cli(["serve", tmp_path, "--port", port])
        assert result.exit_code == 2 and "Invalid value for '--port'" in result.output, result.output
