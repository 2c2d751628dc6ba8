"""The README's dashboard screenshot: a job watched live in headless Chromium.

    python -m benchmarks.dashboard_figure                 # writes dashboard_figure/dashboard.png
    python -m benchmarks.dashboard_figure --update-docs   # over docs/figures/dashboard.png

Runs 48 tasks on four local workers (sleeps of 0.1 to 0.6 s, task 30 a straggler of 8 s,
task 17 raising) in a temporary storage folder, opens ``ex.dashboard()`` in Debian's
headless ``chromium`` (apt: chromium chromium-driver; Selenium from the test extras) and
saves the page while the straggler still runs (a click on the failure's ``traceback`` button
would show its traceback and output), then removes the folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"  # written only with --update-docs
STRAGGLER, FAILING, TASKS = 30, 17, 48


def work(i: int) -> int:
    import time

    print(f"task {i}: sleeping")
    time.sleep(8.0 if i == STRAGGLER else 0.1 + (i * 7 % 11) / 20)
    if i == FAILING:
        raise ValueError(f"bad record {i}: negative length")
    return i


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_figure", description=__doc__)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=Path("dashboard_figure"), help="folder for dashboard.png")
    where.add_argument("--update-docs", action="store_true", help=f"write {FIGURES / 'dashboard.png'} instead")
    args = parser.parse_args(argv)
    if args.update_docs:
        args.out = FIGURES
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from lambdamr import LambdaExecutor
    from lambdamr.testing.browser import missing_browser, start_chromium

    if problem := missing_browser():
        print(problem, file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    shot = args.out / "dashboard.png"
    with tempfile.TemporaryDirectory(prefix="lambdamr-dashboard-") as folder, LambdaExecutor(
        storage=folder, workers=4, progress=False
    ) as ex, ex.dashboard() as board:
        browser = start_chromium()  # before the job: it takes a few seconds to start
        try:
            browser.get(board.url)
            results = ex.map(work, range(TASKS))
            wait = WebDriverWait(browser, 60, poll_frequency=0.1)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#failures button.show-task"))
            wait.until(lambda d: f"task {STRAGGLER}: running" in d.find_element(By.ID, "stragglers").text)
            wait.until(lambda d: d.find_element(By.ID, "progress-text").text.startswith(f"{TASKS - 2} / {TASKS}"))
            browser.save_screenshot(str(shot))
        finally:
            browser.quit()
        try:
            list(results)
        except ValueError:
            pass
    print(f"wrote {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
