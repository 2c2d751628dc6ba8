"""Headless Chromium for the dashboard's end-to-end tests: Debian's ``chromium`` and
``chromium-driver`` (apt), driven by Selenium. No download, no network but loopback."""

from __future__ import annotations

import os
import shutil
from typing import Any

INSTALL_HINT = (
    "the dashboard's browser tests need Debian's chromium and chromium-driver: "
    "sudo apt-get install -y chromium chromium-driver (scripts/test.sh installs them), and selenium "
    "(pip install -e '.[test]')"
)
#: every request but loopback goes to a closed port: the browser reaches nothing outside
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # containers and CI run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--proxy-server=http://127.0.0.1:9",
    "--window-size=1400,1000",
)


def missing_browser() -> str | None:
    """What is missing to run the browser tests, or None."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    return f"{', '.join(missing)} not found: {INSTALL_HINT}" if missing else None


def start_chromium() -> Any:
    """A headless Chromium under Selenium (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
