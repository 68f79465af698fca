"""The web page in a real browser: Debian's chromium, headless, driven by selenium through
chromium-driver (installed by `make browser`, which `make test` runs)."""
import os
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from service_support import checkpoint_copy, encode, live_server, photo

from service.app import create_app
from service.settings import Settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM) and os.path.exists(DRIVER), \
        "chromium and chromium-driver are needed: run `make browser`"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = Settings(cache_dir=str(tmp_path_factory.mktemp("cache")))
    with live_server(create_app(settings)) as base:
        yield base


def test_upload_draws_boxes_and_click_shows_sampling_points(browser, url, tmp_path):
    path = tmp_path / "SOAP_061.png"
    path.write_bytes(encode(photo("SOAP_061")))
    browser.get(url + "/")
    wait = WebDriverWait(browser, 120)
    wait.until(lambda d: "dcn_mobilenet_v2_fpn" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(path))
    canvas = browser.find_element(By.ID, "canvas")
    wait.until(lambda d: int(canvas.get_attribute("data-boxes") or 0) > 0)
    boxes = int(canvas.get_attribute("data-boxes"))
    assert canvas.get_attribute("width") == "400"
    # Box outlines are drawn in the page's box colour.
    green = browser.execute_script(
        "const c = document.getElementById('canvas').getContext('2d');"
        "const p = c.getImageData(0, 0, 400, 400).data; let n = 0;"
        "for (let i = 0; i < p.length; i += 4) if (p[i] === 0 && p[i+1] === 255 && p[i+2] === 160) n++;"
        "return n;")
    assert green > 100
    # The threshold slider filters the boxes client-side.
    browser.execute_script("const t = document.getElementById('threshold'); t.value = 0.99;"
                           "t.dispatchEvent(new Event('input'));")
    assert int(canvas.get_attribute("data-boxes")) < boxes
    # Clicking the image fetches and draws the composed sampling locations of 3 layers.
    canvas.click()
    wait.until(lambda d: canvas.get_attribute("data-offset-points") == str(9 + 81 + 729))
    toggles = browser.find_elements(By.CSS_SELECTOR, "#layers input[type=checkbox]")
    assert len(toggles) == 3
    assert "points" in browser.find_element(By.ID, "layers").text
    browser.execute_script("const t = document.getElementById('threshold'); t.value = 0.3;"
                           "t.dispatchEvent(new Event('input'));")
    assert 0 < int(canvas.get_attribute("data-boxes")) <= boxes
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000
    if os.environ.get("DCN_SCREENSHOT"):  # refreshes the README's screenshot
        browser.save_screenshot(os.environ["DCN_SCREENSHOT"])


def test_keyed_page_picks_a_model_from_the_repository(browser, tmp_path_factory, tmp_path):
    root = tmp_path_factory.mktemp("repository")
    checkpoint_copy(root / "trees" / "1", ["tree"])
    checkpoint_copy(root / "crowns" / "2", ["crown"])
    settings = Settings(model_repository=str(root), backend="torch", device="cpu",
                        api_keys="page-key")
    path = tmp_path / "SOAP_061.png"
    path.write_bytes(encode(photo("SOAP_061")[:300, :300]))
    with live_server(create_app(settings)) as base:
        browser.get(base + "/")
        assert "dcnserve" not in browser.page_source  # 401: the page needs the key
        # What a browser does once its login prompt has the key: send it with every request.
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                                {"headers": {"Authorization": "Bearer page-key"}})
        try:
            browser.get(base + "/")
            wait = WebDriverWait(browser, 120)
            picker = browser.find_element(By.ID, "model-picker")
            wait.until(lambda d: picker.get_attribute("data-models") == "2")
            assert "crown" in picker.text and "tree" in picker.text
            browser.execute_script("const p = document.getElementById('model-picker');"
                                   "p.value = 'trees'; p.dispatchEvent(new Event('change'));")
            browser.find_element(By.ID, "file").send_keys(str(path))
            canvas = browser.find_element(By.ID, "canvas")
            wait.until(lambda d: canvas.get_attribute("data-model") == "trees")
            assert int(canvas.get_attribute("data-boxes") or 0) > 0
        finally:
            browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
