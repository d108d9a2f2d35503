"""The model pages in real headless Chromium (Debian's chromium + chromium-driver, through Selenium) against
real `nnspec serve` processes over models trained and exported here.

The browser can reach 127.0.0.1 only: every other host name resolves to nothing and every other address
goes to a proxy that does not exist, so a page that needed a CDN would show it. Set NNSPEC_SCREENSHOTS=DIR
to keep the screenshots (docs/img/ holds the ones the README shows).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx_fixtures as fx
import pytest
import runtime_helpers as h
from server_process import serving

pytestmark = pytest.mark.slow  # trains models, starts servers and a browser

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
API_KEY = "page-s3cret"
WAIT = 20  # seconds for a page to draw what it fetched


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """animals (a CSV table), patterns (16x16 grayscale PNGs), signals (npz arrays [2, 6]) trained and exported;
    housing (a regression fixture, no example row in its manifest); a version that cannot load (broken)."""
    from nnspec.runtime.export import export_run
    from nnspec.runtime.train import train

    folder = tmp_path_factory.mktemp("pages")
    repo = folder / "models"
    csv_path = h.write_csv(folder)
    h.image_folder(folder / "images", per_class=20)
    h.npz_file(folder / "signals.npz")
    specs = [h.load(folder, h.table_spec(csv_path, training={"epochs": 15}), name="animals.yaml"),
             h.image_spec(folder, epochs=8),
             h.load(folder, h.base_spec(name="signals", data={"source": {"type": "npz", "path": "signals.npz"}},
                                        model={"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3}]},
                                        training={"epochs": 10}), name="signals.yaml")]
    for spec in specs:
        export_run(train(spec, runs_dir=folder / "runs", device="cpu").run_dir, repo)
    fx.publish(repo, "housing")
    _, spare = fx.publish(folder / "spare", "iris")
    (repo / "broken").mkdir()
    spare.rename(repo / "broken" / "1")
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    return {"repo": repo, "folder": folder, "csv": csv_path}


@pytest.fixture(scope="module")
def server(repo):
    with serving(repo["repo"]) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs them: in CI a missing browser is a failure, not a skip
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000",
                     "--no-first-run", "--disable-background-networking", "--lang=en-US",
                     # the network: 127.0.0.1 only
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                     "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, url: str) -> None:
    """Load `url` and wait until the page script has drawn what it fetched."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def wait_for(driver, css: str, condition=lambda element: element.is_displayed()):
    """The first element matching `css` once `condition` holds for it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d):
        elements = d.find_elements(By.CSS_SELECTOR, css)
        return elements[0] if elements and condition(elements[0]) else False

    return WebDriverWait(driver, WAIT).until(found)


def answer_label(driver) -> str:
    return wait_for(driver, "#answer-label").text


def fresh_answer(driver):
    """Remove the last answer, so that waiting for #answer-label waits for the next one."""
    driver.execute_script("document.getElementById('answer')?.replaceChildren()")


def screenshot(driver, name: str, tmp_path: Path, height: int = 1000) -> Path:
    """A PNG of a 1200 x `height` window: into NNSPEC_SCREENSHOTS (palette-reduced, small) when set, else tmp_path."""
    from PIL import Image

    folder = Path(os.environ.get("NNSPEC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    driver.set_window_size(1200, height)
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(1200, 1000)
    with Image.open(path) as image:
        assert image.width > 300 and image.getextrema() != ((255, 255), (255, 255), (255, 255), (255, 255))
        image.convert("RGB").quantize(64).save(path, optimize=True)
    return path


def predicted(repo: Path, model: str, *files: Path) -> list[dict]:
    """`nnspec predict MODEL FILES --json`: the CLI's answers, to compare the page's with."""
    result = h.cli(["predict", model, *files, "--repo", repo, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["predictions"]


def test_the_repository_page_lists_every_model_with_its_status(browser, server, repo, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(browser, server + "/")
    rows = {row.get_attribute("data-model"): row for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-model]")}
    assert list(rows) == ["animals", "broken", "housing", "patterns", "signals"]
    animals = rows["animals"].text
    assert "ready" in animals and "classification" in animals and "table of 3 features" in animals
    parameters = json.loads((repo["repo"] / "animals" / "1" / "nnspec.json").read_text())["parameters"]
    assert "accuracy" in animals and f"{parameters:,}" in animals
    assert "regression" in rows["housing"].text and "16x16 grayscale image" in rows["patterns"].text and "array [2, 6]" in rows["signals"].text
    assert "failed" in rows["broken"].text and "version 1" in rows["broken"].text
    assert str(repo["folder"]) not in browser.page_source  # no server path on a page
    links = [a.get_attribute("href") for a in rows["signals"].find_elements(By.TAG_NAME, "a")]
    assert links == [server + "/models/signals", server + "/v1/models/signals", server + "/v2/models/signals"]
    screenshot(browser, "repository.png", tmp_path, height=760)
    rows["broken"].find_element(By.LINK_TEXT, "broken").click()  # its page says why it serves nothing
    wait_for(browser, "#status.error")
    assert "failed" in browser.find_element(By.ID, "content").text and "cannot load" in browser.page_source


def test_the_table_form_answers_what_nnspec_predict_answers_for_the_same_row(browser, server, repo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    row = h.table().iloc[7]
    row_csv = tmp_path / "row.csv"
    row.to_frame().T.to_csv(row_csv, index=False)
    expected = predicted(repo["repo"], "animals", row_csv)[0]
    open_page(browser, server + "/models/animals")
    # Everything that takes input has a label.
    assert browser.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')].every(e => e.labels.length > 0)")
    # Tab reaches every field of the form and its button, in order.
    browser.find_element(By.TAG_NAME, "body").click()
    reached = []
    for _ in range(25):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(browser.execute_script("const e = document.activeElement; return e.id || e.textContent.trim()"))
    fields = [r for r in reached if r.startswith("feature-") or r == "Predict"]
    assert fields[:4] == ["feature-0", "feature-1", "feature-2", "Predict"], reached
    # Fill the form with the keyboard alone: type each field, pick the category by typing, Enter submits.
    browser.find_element(By.ID, "feature-0").send_keys(str(row["x1"]))
    browser.find_element(By.ID, "feature-1").send_keys(row["color"])
    browser.find_element(By.ID, "feature-2").send_keys(str(row["x2"]), Keys.ENTER)
    assert answer_label(browser) == expected["label"]
    bars = browser.find_elements(By.CSS_SELECTOR, ".bars .value")
    assert len(bars) == 3 and bars[0].text == f"{100 * expected['probabilities'][expected['label']]:.1f} %"
    curl = browser.find_element(By.ID, "curl").text
    assert "/v1/models/animals:predict" in curl and "Content-Type: application/json" in curl and row["color"] in curl
    # The plots the export copied, the metrics and the rendered model card.
    images = browser.find_elements(By.CSS_SELECTOR, ".plots img")
    assert len(images) == 2 and all(browser.execute_script("return arguments[0].naturalWidth", i) > 100 for i in images)
    assert browser.find_element(By.CSS_SELECTOR, ".model-card h1").text == "animals"
    assert "accuracy" in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "model.png", tmp_path, height=1500)


def test_an_uploaded_png_and_a_drawing_get_answers(browser, server, repo, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    png = tmp_path / "vertical.png"
    Image.fromarray(h.image_pattern("vertical", 16, np.random.default_rng(5)), mode="L").save(png)
    expected = predicted(repo["repo"], "patterns", png)[0]
    open_page(browser, server + "/models/patterns")
    browser.find_element(By.ID, "image-file").send_keys(str(png))
    browser.find_element(By.CSS_SELECTOR, "#try-form button[type=submit]").click()
    assert answer_label(browser) == expected["label"]
    assert ":classify" in browser.find_element(By.ID, "curl").text

    # A file dropped on the drop zone is sent at once.
    fresh_answer(browser)
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "const files = new DataTransfer(); files.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));"
        "document.querySelector('.drop').dispatchEvent(new DragEvent('drop', {dataTransfer: files, bubbles: true}))",
        base64.b64encode(png.read_bytes()).decode())
    assert answer_label(browser) == expected["label"]
    assert "dropped.png" in browser.find_element(By.ID, "curl").text

    fresh_answer(browser)
    canvas = browser.find_element(By.ID, "draw")
    stroke = ActionChains(browser).move_to_element_with_offset(canvas, -60, -80).click_and_hold()
    for _ in range(8):
        stroke = stroke.move_by_offset(0, 20)
    stroke.release().perform()
    drawn = browser.execute_script(
        "const c = document.getElementById('draw'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let ink = 0; for (let i = 0; i < d.length; i += 4) ink += d[i] > 128; return ink")
    assert drawn > 500  # the stroke is on the canvas
    browser.find_element(By.ID, "classify-drawing").click()
    assert answer_label(browser) in h.IMAGE_CLASSES
    assert "drawing.png" in browser.find_element(By.ID, "curl").text


def test_an_array_model_is_tried_with_the_real_validation_row_from_its_manifest(browser, server, repo, tmp_path):
    from selenium.webdriver.common.by import By

    manifest = json.loads((repo["repo"] / "signals" / "1" / "nnspec.json").read_text())
    open_page(browser, server + "/models/signals")
    shown = json.loads(browser.find_element(By.ID, "instance").get_attribute("value"))
    assert shown == manifest["example"] and np.array(shown).shape == (2, 6)
    request = tmp_path / "row.json"
    request.write_text(json.dumps({"instances": [shown]}))
    expected = predicted(repo["repo"], "signals", request)[0]
    browser.find_element(By.CSS_SELECTOR, "#try-form button[type=submit]").click()
    assert answer_label(browser) == expected["label"]

    # A regressor whose manifest keeps no example: zeros of its shape, and the values as the answer.
    open_page(browser, server + "/models/housing")
    assert json.loads(browser.find_element(By.ID, "instance").get_attribute("value")) == [0, 0, 0]
    browser.find_element(By.CSS_SELECTOR, "#try-form button[type=submit]").click()
    cells = {c.get_attribute("data-target"): float(c.text) for c in
             [wait_for(browser, "td[data-target]"), *browser.find_elements(By.CSS_SELECTOR, "td[data-target]")[1:]]}
    expected_values = fx.reference("housing", np.zeros((1, 3), np.float32))["values"][0]
    np.testing.assert_allclose([cells["price"], cells["rent"]], expected_values, atol=1e-4)


def test_the_pages_fit_a_phone_screen(browser, server):
    # A phone's viewport (headless windows are never narrower than 500 px): nothing scrolls sideways.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        for page in ("/", "/models/animals"):
            open_page(browser, server + page)
            assert browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]") == [390, 390], page
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_docs_and_redoc_render_with_the_network_blocked(browser, server):
    from selenium.webdriver.common.by import By

    # The block holds: the CDN that FastAPI's default /docs loads from cannot be reached.
    outcome = browser.execute_async_script(
        "const done = arguments[0]; fetch('https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css')"
        ".then(() => done('reached'), () => done('blocked'))")
    assert outcome == "blocked"
    browser.get(server + "/docs")
    wait_for(browser, ".opblock")
    operations = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    assert len(operations) > 10 and "/v1/models/{name}:predict" in [o.text.replace("\u200b", "") for o in operations]
    browser.get(server + "/redoc")
    wait_for(browser, "h1", lambda element: "nnspec serve" in element.text)
    assert "Predict with the latest version" in browser.find_element(By.TAG_NAME, "body").text


def test_a_server_with_an_api_key_asks_for_it_once_and_then_answers(browser, repo):
    from selenium.webdriver.common.by import By

    with serving(repo["repo"], "--api-key-env", "PAGES_KEY", env={"PAGES_KEY": API_KEY}) as (url, _):
        browser.get(url + "/")
        field = wait_for(browser, "#api-key")
        field.send_keys("wrong", "\n")
        wait_for(browser, "#key-note", lambda element: "refused" in element.text)
        browser.find_element(By.ID, "api-key").send_keys(API_KEY, "\n")
        wait_for(browser, "tr[data-model=signals]")
        open_page(browser, url + "/models/signals")  # the same tab: the key is not asked again
        assert not browser.find_element(By.ID, "key-form").is_displayed()
        browser.find_element(By.CSS_SELECTOR, "#try-form button[type=submit]").click()
        assert answer_label(browser) in json.loads((repo["repo"] / "signals" / "1" / "nnspec.json").read_text())["labels"]
        curl = browser.find_element(By.ID, "curl").text
        assert "Authorization: Bearer $NNSPEC_API_KEY" in curl and API_KEY not in browser.page_source
        browser.execute_script("sessionStorage.clear()")
