"""The plane's dashboard in a real headless browser (Debian's chromium and chromedriver, driven by
selenium): `knserve dashboard` gives its URL, the page lists the example InferenceService and
its revision, and its requests/s plot updates while predictions go through the gateway. The
screenshot is saved in the test's folder (its path is printed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from debian_packages import ensure_debian
from net_fixtures import ServerProcess
from plane_fixtures import LocalPlane

pytestmark = pytest.mark.slow

HOST = "sklearn-iris.default.localhost"
PREDICTOR = "default/sklearn-iris-predictor-00001"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless chromium under chromedriver, both Debian's (installed when missing)."""
    ensure_debian({"chromium": "chromium", "chromedriver": "chromium-driver"})
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    service = Service(
        executable_path="/usr/bin/chromedriver", log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_dashboard_shows_the_example_and_its_traffic_plot_updates(
    spawn: Callable[..., ServerProcess], tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    plane = LocalPlane(spawn, tmp_path / "plane", ["--example"])
    try:
        plane.wait_ready("inferenceservices", "sklearn-iris", timeout=180)
        shown = plane.knserve("dashboard", "--no-open")
        assert shown.returncode == 0, shown.stderr
        url = shown.stdout.strip()
        assert url == f"{plane.api}/dashboard"
        # what `make up` prints on startup says the same
        assert f"dashboard: {url} (or `knserve dashboard`)" in plane.log()

        browser.get(url)
        wait = WebDriverWait(browser, 30, poll_frequency=0.2)
        wait.until(lambda d: "sklearn-iris" in d.find_element(By.ID, "services").text)
        services = browser.find_element(By.ID, "services").text
        assert (
            "InferenceService default sklearn-iris http://sklearn-iris.default.localhost True"
            in services
        )
        wait.until(
            lambda d: "sklearn-iris-predictor-00001" in d.find_element(By.ID, "revisions").text
        )
        revisions = browser.find_element(By.ID, "revisions").text
        assert "sklearn-iris-predictor-00001 sklearn-iris-predictor 100% 1 / 1" in revisions

        plot = browser.find_element(By.ID, "plot-rps")
        wait.until(lambda d: plot.get_attribute("data-updated"))
        first = float(plot.get_attribute("data-updated"))

        def requests_per_second() -> float:
            last = json.loads(plot.get_attribute("data-last") or "{}")
            return float(last.get(PREDICTOR) or 0)

        stop = threading.Event()

        def predict() -> None:
            # bounded: until the plot shows them, at most 20000 predictions or 60 s. A fixed few
            # hundred can all fall between two 2 s samples on a quiet machine, and the page may
            # never fetch the one sample that shows them.
            deadline = time.monotonic() + 60
            for _ in range(20000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                plane.call(
                    HOST,
                    "/v1/models/sklearn-iris:predict",
                    "POST",
                    json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
                )

        sender = threading.Thread(target=predict, daemon=True)
        sender.start()
        try:
            # the plot moved on since the page loaded, and its last point shows the predictions
            WebDriverWait(browser, 60, poll_frequency=0.2).until(
                lambda d: (
                    float(plot.get_attribute("data-updated")) > first
                    and int(plot.get_attribute("data-points")) >= 2
                    and requests_per_second() > 0
                )
            )
        finally:
            stop.set()
            sender.join(30)
        latency = browser.find_element(By.ID, "plot-latency")
        assert float(json.loads(latency.get_attribute("data-last"))[PREDICTOR]) > 0
        screenshot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(screenshot))
        print(f"dashboard screenshot: {screenshot}")
    finally:
        plane.close()
