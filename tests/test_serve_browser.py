"""The page of ``gluon-triplet serve`` in a real browser: headless Chromium driven by Selenium
through Debian's chromedriver (no browser or driver is downloaded).

Uploads a picture, sees k thumbnails with class and distance, then clicks one and sees
the search from it (the item itself first, at distance 0). A screenshot is kept in
``tests/artifacts/`` (git-ignored). Skips without chromium, chromedriver or selenium,
unless ``GLUON_TRIPLET_REQUIRE_BROWSER=1`` (set by ``.ci/run`` once they are installed).
"""

import os
import shutil
import signal

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
K = 4


def _need(what, found):
    if found:
        return found
    reason = f"{what} not installed (apt-get install chromium chromium-driver; pip selenium)"
    if os.environ.get("GLUON_TRIPLET_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GLUON_TRIPLET_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    chromium = _need("chromium", shutil.which("chromium") or shutil.which("chromium-browser"))
    driver_path = _need("chromedriver", shutil.which("chromedriver"))
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need("selenium", None)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    options.add_argument("--disable-dev-shm-usage")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from test_serve import make_served_index, start_server

    served = make_served_index(tmp_path_factory.mktemp("page"))
    proc, url = start_server(served["ix"], "-q")
    yield served, url
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)


def _hits(driver):
    """``(id, label, distance text, thumbnail loaded)`` of each result card."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#results .hit')].map(h => [Number(h.dataset.id),"
        " h.querySelector('.label').textContent, h.querySelector('.distance').textContent,"
        " h.querySelector('img').complete && h.querySelector('img').naturalWidth > 0])"
    )


def test_upload_shows_k_thumbnails_and_a_click_searches_from_one(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    served, url = server
    browser.get(url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: "items of" in d.find_element(By.ID, "about").text)
    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys(str(K))
    query = os.path.join(served["folder"], "green", "04.jpg")
    browser.find_element(By.ID, "file").send_keys(query)

    def loaded(d):
        hits = _hits(d)
        return hits if len(hits) == K and all(h[3] for h in hits) else False

    hits = wait.until(loaded)
    assert "nearest items of 04.jpg" in browser.find_element(By.ID, "status").text
    for _, label, distance, _ in hits:
        assert label in ("red", "green", "blue") and distance.startswith("distance ")
    os.makedirs(ARTIFACTS, exist_ok=True)
    browser.save_screenshot(os.path.join(ARTIFACTS, "serve-page.png"))

    # Click the last neighbour: its picture becomes the query, and it comes first.
    clicked = hits[-1][0]
    browser.find_elements(By.CSS_SELECTOR, "#results .hit")[-1].click()
    wait.until(lambda d: f"nearest items of item {clicked}" in d.find_element(By.ID, "status").text)
    again = wait.until(loaded)
    assert again[0][0] == clicked and again[0][2].startswith("distance 0.0000")
