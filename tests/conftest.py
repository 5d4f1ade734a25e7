"""Shared test fixtures: real data from ../shared (skipped with a reason when absent) and the slow-test switch."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from harness.paths import shared_data_dir

# CI runs on 2 cores: keep property tests bounded, and never let a slow CI machine fail a deadline. The default run
# is derandomized, so a commit passes or fails the same way every time; HYPOTHESIS_PROFILE=deep hunts at random
# with ten times the examples (run it before a release: a failure it finds becomes an @example).
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("BENCH_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or BENCH_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the real traces are not part of the repository."""
    root = shared_data_dir()
    if root is None:
        pytest.skip("../shared/data is not present beside this checkout (real traces are read from there)")
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Debian's headless chromium through selenium, offline, console messages captured; skip when absent."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not Path(CHROMEDRIVER).exists():
        pytest.skip("headless chromium and /usr/bin/chromedriver are not installed (apt-get install chromium "
                    "chromium-driver; .ci/run does it)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1366,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium-manager must never try to download a driver.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, page: Path, shot: Path) -> list[dict]:
    """Open a report, wait until its plots are drawn, save a full-page screenshot; return the console messages."""
    driver.get_log("browser")  # drop anything left from an earlier page
    driver.get(page.as_uri())
    deadline, state = time.monotonic() + 60, ""
    while time.monotonic() < deadline and not state:
        state = driver.execute_script("return document.body.dataset.plots || ''")
        time.sleep(0.1)
    assert state == "ready", f"plots did not draw (state {state!r})"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1366, min(int(height) + 100, 16000))
    time.sleep(0.3)  # responsive plots re-lay themselves out after the resize
    driver.save_screenshot(str(shot))
    driver.set_window_size(1366, 900)
    return driver.get_log("browser")
