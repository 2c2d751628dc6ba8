"""End to end: a real headless Chromium watches a job on the dashboard while it runs.

The browser is Debian's ``chromium`` with ``chromium-driver``, driven by Selenium. A missing
browser fails these tests with what to install (``scripts/test.sh`` installs it); it never
skips them. Screenshots are saved under ``LAMBDAMR_TEST_ARTEFACTS`` (default: the test's
temporary folder) and their path is printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lambdamr.testing.browser import missing_browser, start_chromium

WAIT_S = 90  # a busy CI machine: the page polls every second, the history beats every 2 s


def gated(i, gate):
    """Tasks 0-3 finish (task 2 raises); the others run until the test opens ``gate``."""
    import os
    import time

    print(f"task {i} starting")
    if i == 2:
        raise ValueError(f"bad item {i}")
    if i >= 4:
        deadline = time.monotonic() + 120
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never opened the gate")
            time.sleep(0.01)
    return i


@pytest.fixture
def browser():
    problem = missing_browser()
    if problem:
        pytest.fail(problem)
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def artefacts(tmp_path) -> Path:
    folder = Path(os.environ.get("LAMBDAMR_TEST_ARTEFACTS") or tmp_path / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        shown = driver.find_element("tag name", "body").text[:2000]
        raise AssertionError(f"the page never showed {what}; it shows:\n{shown}") from None


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def test_the_page_shows_a_running_job_its_progress_and_a_failed_tasks_traceback(
    make_executor, browser, tmp_path, artefacts
):
    from selenium.webdriver.common.by import By

    ex = make_executor(workers=2)
    gate = tmp_path / "gate"
    results = ex.map(gated, range(8), [str(gate)] * 8)
    job_id = results.job.job_id
    board = ex.dashboard()
    try:
        browser.get(board.url)
        item = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'.job[data-job-id="{job_id}"]'), "the job")
        item[0].click()
        _wait(browser, lambda d: _text(d, "job-title") == job_id and "running" in _text(d, "job-state"), "it running")
        _wait(browser, lambda d: _text(d, "progress-text").startswith("4 / 8 tasks done"), "4 of 8 tasks done")
        assert "1 failed" in _text(browser, "progress-text")
        running = browser.find_elements(By.CSS_SELECTOR, '#gantt rect.task[data-state="running"]')
        assert running, "the task stream draws the tasks in flight"
        browser.save_screenshot(str(artefacts / "dashboard-running.png"))

        gate.touch()  # the other four finish: the progress moves
        _wait(browser, lambda d: _text(d, "progress-text").startswith("8 / 8 tasks done"), "8 of 8 tasks done")
        _wait(browser, lambda d: _text(d, "job-state") == "failed", "the job's final state")
        drawn = {r.get_attribute("data-task") for r in browser.find_elements(By.CSS_SELECTOR, "#gantt rect.task")}
        assert drawn == {str(i) for i in range(8)}
        assert "$" in _text(browser, "facts") and "cold starts" in _text(browser, "facts")

        browser.find_element(By.CSS_SELECTOR, '#failures button.show-task[data-task="2"]').click()
        _wait(browser, lambda d: "ValueError: bad item 2" in _text(d, "traceback"), "the failed task's traceback")
        assert 'raise ValueError(f"bad item {i}")' in _text(browser, "traceback")
        assert "task 2 starting" in _text(browser, "task-logs")
        shot = artefacts / "dashboard.png"
        browser.save_screenshot(str(shot))
        print(f"dashboard screenshots: {artefacts}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        gate.touch()
        board.close()
    with pytest.raises(ValueError):
        list(results)
