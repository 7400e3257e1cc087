"""reports/leaderboard.html in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, which `.ci/run` installs) driven by Selenium shows the committed entries in
rank order with rank ranges and intervals, fits a 1400 px window, and sorts by a clicked header,
and back the other way on a second click."""

import shutil
from pathlib import Path

import pytest

from benchmark.leaderboard import Ranking, leaderboard_html, rank
from benchmark.scores import SCORES
from benchmark.storage import read_json

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no chromium and chromedriver on PATH (apt install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def expected_order(rows: list[tuple[str, float | None]], ascending: bool) -> list[str]:
    """The page's sort, independently: stable, numeric, rows without a value last either way."""
    valued = sorted((r for r in rows if r[1] is not None), key=lambda r: r[1] if ascending else -r[1])
    return [i for i, _ in valued] + [i for i, v in rows if v is None]


@pytest.mark.slow
def test_the_leaderboard_page_sorts_by_a_clicked_header(browser, tmp_path):
    from selenium.webdriver.common.by import By

    entries = [read_json(p) for p in sorted((ROOT / "leaderboard").glob("embedded*/*.json"))]
    assert len(entries) > 10
    page = tmp_path / "leaderboard.html"
    ranking = Ranking("augmentation_invariance", "augmentation_invariance", chance=0.1, above_chance=0.5,
                      below_standard=0.1)
    standing = rank(entries, ranking)
    page.write_text(leaderboard_html(standing, "embedded", ranking))
    browser.get(page.as_uri())

    def shown() -> list[str]:
        return [c.text for c in browser.find_elements(By.CSS_SELECTOR, "tbody tr td:nth-child(2) code")]

    ranked = standing[0]
    initial = [e["id"] for _, e in ranked]
    assert shown() == initial
    ranks = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "tbody tr td.rank")]
    assert ranks == [text for text, _ in ranked] and any("–" in r for r in ranks)
    intervals = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "tbody tr:first-child small.ci")]
    assert len(intervals) == len(SCORES) and all(t.startswith("[") and t.endswith("]") for t in intervals)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1400   # no sideways scroll
    by_id = {e["id"]: e for e in entries}
    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, "th[data-col]")
                  if th.text == SCORES["clean_acc"].title)
    header.click()
    ascending = expected_order([(i, by_id[i]["scores"].get("clean_acc")) for i in initial], ascending=True)
    assert shown() == ascending and ascending != initial
    header.click()
    descending = expected_order([(i, by_id[i]["scores"].get("clean_acc")) for i in ascending], ascending=False)
    assert shown() == descending and descending[0] == max(entries, key=lambda e: e["scores"]["clean_acc"])["id"]
    shot = tmp_path / "leaderboard.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nscreenshot: {shot}")
