"""imagen-app in a real headless Chromium (selenium), as a person uses it: type a prompt, press Generate, wait
for the full-size image, download it and read its PNG text chunks; a bad upload shows its message; two tabs
queue. Not in the default run (needs the app extra, selenium and Debian's chromium + chromium-driver):

    pip install -e '.[app-test]' && pytest -m browser tests/imagen/test_app_browser.py

It serves the tiny test cascade, or the model IMAGEN_APP_MODEL names; with IMAGEN_APP_SCREENSHOTS=1 it writes the
page's screenshots to docs/app-*.png (the README's pictures come from IMAGEN_APP_MODEL=shapes).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.browser
pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

PROMPT = "a large red circle at the center on a blue background"
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    """(model name or directory, the resolution of its last stage)."""
    from imagen.checkpoint import read_model, resolve_model

    name = os.environ.get("IMAGEN_APP_MODEL") or str(tiny_model_dir)
    config = read_model(resolve_model(name))[0]
    return name, list(config.stages().values())[-1].resolution


@pytest.fixture(scope="module")
def app(model):
    """The app on a free loopback port, serving `model`; yields its address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "imagen.app", "--model", model[0], "--port", str(port),
               "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    address = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(address, timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"imagen-app exited: {server.stdout.read()[-2000:]}")
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("imagen-app did not start in 120 s")
    yield address
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    if shutil.which("chromedriver") is None:
        pytest.skip("no chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options)
    yield driver
    driver.quit()


def _wait(condition, timeout: float = 120, what: str = "the page"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def _images(driver, element_id: str) -> list:
    return [img for img in driver.find_elements(By.CSS_SELECTOR, f"#{element_id} img")
            if driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)]


def _type_prompt(driver, text: str) -> None:
    box = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#prompt textarea"), what="the prompt box")[0]
    box.clear()
    box.send_keys(text)


def _open_tab(driver, label: str) -> None:
    tabs = _wait(lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']") if label in b.text],
                 what=f"the {label} tab")
    tabs[0].click()


def _screenshot(driver, name: str) -> None:
    if os.environ.get("IMAGEN_APP_SCREENSHOTS") == "1":
        driver.save_screenshot(str(DOCS / f"app-{name}.png"))


def test_generate_shows_every_stage_and_downloads_full_size_pngs(app, browser, model):
    size = model[1]
    browser.get(app)
    _type_prompt(browser, PROMPT)
    browser.find_element(By.ID, "generate").click()
    final = _wait(lambda: _images(browser, "gallery-sr2"), what="the image of the last stage")
    assert browser.execute_script("return arguments[0].naturalWidth", final[0]) == size
    assert _images(browser, "gallery-base") and _images(browser, "gallery-sr1")
    link = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#download a[href]"), what="the download link")
    data = urllib.request.urlopen(link[0].get_attribute("href"), timeout=30).read()
    png = Image.open(io.BytesIO(data))
    assert png.format == "PNG" and png.size == (size, size)
    assert png.text["prompt"] == PROMPT
    settings = json.loads(png.text["settings"])
    assert list(settings["stages"]) == ["base", "sr1", "sr2"] and settings["seed"] == 0
    _screenshot(browser, "generate")


def test_a_bad_upload_shows_its_message_and_the_next_request_works(app, browser, tmp_path):
    browser.get(app)
    _type_prompt(browser, PROMPT)
    _open_tab(browser, "Variations")
    wide = tmp_path / "wide.png"
    Image.new("RGB", (64, 40), (200, 30, 30)).save(wide)
    upload = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#variations-image input[type=file]"),
                   what="the upload field")[0]
    upload.send_keys(str(wide))
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#variations-image img"), what="the uploaded image")
    browser.find_element(By.ID, "variations-run").click()
    _wait(lambda: "square images" in browser.find_element(By.TAG_NAME, "body").text, what="the error message")
    _screenshot(browser, "error")
    _open_tab(browser, "Text to image")
    browser.find_element(By.ID, "generate").click()
    _wait(lambda: _images(browser, "gallery-sr2"), what="an image after the failed request")


def test_two_tabs_queue_and_both_finish(app, browser):
    browser.get(app)
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    second = browser.current_window_handle
    browser.get(app)
    for handle in (first, second):
        browser.switch_to.window(handle)
        _type_prompt(browser, PROMPT)
    browser.switch_to.window(first)
    browser.find_element(By.ID, "generate").click()
    browser.switch_to.window(second)
    browser.find_element(By.ID, "generate").click()
    for handle in (second, first):
        browser.switch_to.window(handle)
        _wait(lambda: _images(browser, "gallery-sr2"), what="both tabs' images")
    browser.switch_to.window(second)
    browser.close()
    browser.switch_to.window(first)
