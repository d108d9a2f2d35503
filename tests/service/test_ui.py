"""The model pages' routes without a browser: what is open, what the key guards, what the data says,
--no-ui, the offline docs, and the stylesheet's colour pairs against WCAG AA."""

import re
from pathlib import Path

import onnx_fixtures as fx
import pytest

from nnspec.service.routes_ui import PAGE_HEADERS, UI_FOLDER, headline_metric, input_kind
from nnspec.service.settings import Settings

KEY = "ui-s3cret"


def test_the_pages_are_open_and_their_data_needs_the_api_key(shared_repo, client_for, monkeypatch):
    monkeypatch.setenv("TEST_UI_KEY", KEY)
    with client_for(shared_repo, api_key_env="TEST_UI_KEY") as client:
        for path in ("/", "/models/iris", "/ui/static/app.js", "/ui/static/style.css"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in PAGE_HEADERS["Content-Security-Policy"]
        for path in ("/ui/api/models", "/ui/api/models/iris", "/ui/api/models/iris/versions/1/plots/curves.png"):
            refused = client.get(path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
        rows = client.get("/ui/api/models", headers={"Authorization": f"Bearer {KEY}"}).json()["models"]
        assert [row["name"] for row in rows] == sorted(fx.MODELS)


def test_only_the_pages_own_files_are_served(shared_repo, client_for):
    with client_for(shared_repo) as client:
        for path in ("/ui/static/page.html", "/ui/static/..%2Froutes_ui.py", "/ui/static/__init__.py"):
            missing = client.get(path)
            assert missing.status_code == 404 and "error" in missing.json(), path
        assert client.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")


def test_the_repository_rows_say_status_and_why_without_a_server_path(repo, client_for):
    (repo / "iris" / "2").mkdir()
    (repo / "iris" / "2" / "model.onnx").write_bytes(b"cut short")
    (repo / "iris" / "2" / "nnspec.json").write_text((repo / "iris" / "1" / "nnspec.json").read_text())
    (repo / "gone" / "1").mkdir(parents=True)
    (repo / "gone" / "1" / "model.onnx").write_bytes(b"cut short")
    (repo / "gone" / "1" / "nnspec.json").write_text((repo / "housing" / "1" / "nnspec.json").read_text())
    with client_for(repo) as client:
        answer = client.get("/ui/api/models")
    rows = {row["name"]: row for row in answer.json()["models"]}
    assert str(repo) not in answer.text
    iris, gone = rows["iris"], rows["gone"]
    assert iris["status"] == "ready" and iris["versions"] == [1, 2] and iris["served"] == [1]
    assert iris["reason"].startswith("version 2: iris/2/model.onnx: cannot load")
    assert gone["status"] == "failed" and gone["served"] == [] and gone["task"] == "regression"
    assert rows["credit"]["input_kind"] == "table of 3 features" and rows["digits8"]["input_kind"] == "8x8 grayscale image"
    assert rows["housing"]["input_kind"] == "array [3]"


def test_a_model_published_after_start_is_loading_until_the_next_poll(tmp_path, client_for):
    repo = fx.build_repo(tmp_path / "models", names=("iris",))
    with client_for(repo, model_control="poll", poll_seconds=3600) as client:
        fx.publish(repo, "housing")
        rows = {row["name"]: row for row in client.get("/ui/api/models").json()["models"]}
    assert rows["housing"]["status"] == "loading" and rows["housing"]["task"] == "regression"
    assert rows["iris"]["status"] == "ready"


def test_the_model_data_has_the_rendered_card_the_plots_and_the_example(repo, client_for):
    version = repo / "housing" / "1"
    (version / "README.md").write_text("# housing\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    (version / "curves.png").write_bytes(fx.png(fx.np.zeros((4, 4))))
    with client_for(repo) as client:
        model = client.get("/ui/api/models/housing").json()
        assert model["plots"] == ["curves.png"] and model["targets"] == ["price", "rent"]
        assert "<table>" in model["card"] and "<script>" not in model["card"] and "&lt;script&gt;" in model["card"]
        assert model["example"] is None  # a fixture manifest keeps none; an export keeps one (tests/runtime)
        plot = client.get("/ui/api/models/housing/versions/1/plots/curves.png")
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
        assert plot.content == (version / "curves.png").read_bytes()
        assert client.get("/ui/api/models/housing/versions/1/plots/confusion.png").status_code == 404
        assert client.get("/ui/api/models/housing/versions/1/plots/nnspec.json").status_code == 404
        assert client.get("/ui/api/models/ghost").status_code == 404


def test_no_ui_leaves_the_api_and_sends_slash_to_the_docs(shared_repo, client_for, monkeypatch):
    monkeypatch.setenv("NNSPEC_UI", "false")
    assert Settings().ui is False
    with client_for(shared_repo, ui=False) as client:
        root = client.get("/", follow_redirects=False)
        assert root.status_code in (302, 307) and root.headers["location"] == "/docs"
        for path in ("/models/iris", "/ui/static/app.js", "/ui/api/models"):
            assert client.get(path).status_code == 404, path
        assert client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]}).status_code == 200


def test_the_docs_load_their_assets_from_this_server(shared_repo, client_for):
    with client_for(shared_repo) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets and all(a.startswith("/static-offline-docs/") for a in assets), assets
            assert "https://" not in html and "http://" not in html
            for asset in assets:
                assert client.get(asset).status_code == 200, asset


def test_helpers_describe_inputs_and_pick_a_metric_other_than_the_loss():
    assert input_kind({"input": {"shape": [40]}}) == "array [40]"
    assert input_kind({"input": {"shape": [3, 8, 8]}, "image": {"size": [8, 8], "color": "rgb"}}) == "8x8 rgb image"
    assert headline_metric({"metrics": {"test": {"loss": 0.2, "accuracy": 0.9}}}) == \
        {"split": "test", "name": "accuracy", "value": 0.9}
    assert headline_metric({"metrics": {"validation": {"loss": 0.2}, "test": {}}})["split"] == "validation"
    assert headline_metric({"metrics": {}}) is None


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two #rrggbb colours."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# (foreground, background, minimum): text 4.5:1 (AA), borders, bars and the focus ring 3:1 (non-text).
PAIRS = [("text", "page", 4.5), ("muted", "page", 4.5), ("text", "panel", 4.5), ("muted", "panel", 4.5),
         ("link", "page", 4.5), ("on-accent", "accent", 4.5), ("accent", "page", 4.5), ("ok", "ok-bg", 4.5),
         ("bad", "bad-bg", 4.5), ("wait", "wait-bg", 4.5), ("line", "page", 3), ("accent", "track", 3),
         ("focus", "page", 3), ("focus", "panel", 3)]


@pytest.mark.parametrize("foreground, background, minimum", PAIRS)
def test_the_stylesheet_colours_pass_wcag_aa(foreground, background, minimum):
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", (UI_FOLDER / "style.css").read_text()))
    assert contrast(colours[foreground], colours[background]) >= minimum


def test_every_control_in_the_page_shell_has_a_label():
    html = (UI_FOLDER / "page.html").read_text()
    ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html)
    assert ids and all(f'<label for="{i}"' in html for i in ids)
    assert Path(UI_FOLDER / "app.js").read_text().count("innerHTML") == 1  # the server-rendered model card only


@pytest.mark.parametrize("option, pages", [([], True), (["--no-ui"], False)])
def test_serve_no_ui_turns_the_pages_off(shared_repo, monkeypatch, option, pages):
    import uvicorn
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from nnspec.cli import app

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    result = CliRunner().invoke(app, ["serve", str(shared_repo), *option])
    assert result.exit_code == 0, result.output
    page = TestClient(served[0]).get("/models/iris")  # no lifespan: the page needs no model
    assert page.status_code == (200 if pages else 404)
