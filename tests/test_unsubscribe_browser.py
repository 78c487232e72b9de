"""The unsubscribe page in a real headless browser (Debian's chromium, via Selenium).

A member opens the one-click link from their copy: the page renders on a phone-sized
screen with one button; pressing it shows the goodbye and the member is gone. In CI the
browser is installed by .ci/run and this test must run; on a machine without chromium
it is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from tests.support.world import MakeWorld
from tests.test_http import HTTP, MEMBER, member_emails, publish

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _browse(url: str) -> tuple[str, bool, str]:
    """Open ``url`` on a 390x844 screen, read the page, press its button."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and DRIVER is not None
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=390,844"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(url)
        heading = driver.find_element(By.TAG_NAME, "h1").text
        button = driver.find_element(By.TAG_NAME, "button")
        visible = button.is_displayed() and button.size["width"] <= 390
        button.click()
        WebDriverWait(driver, 10).until(
            expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "afgemeld"))
        return heading, visible, driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()


async def test_unsubscribe_page_works_in_a_real_browser(make_world: MakeWorld) -> None:
    """The page renders, the button works, the member is gone afterwards."""
    if CHROMIUM is None or DRIVER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run)")
        pytest.skip("no chromium/chromedriver on this machine (apt install chromium-driver)")
    world = await make_world(http=HTTP)
    url = await publish(world)
    heading, visible, after = await asyncio.to_thread(_browse, url)
    assert heading == "Afmelden" and visible
    assert "U krijgt geen berichten van BIN Noord meer" in after
    assert MEMBER not in await member_emails(world)
