"""A real headless Chromium (Debian's `chromium`) driven by Playwright, shared by every test
that uses a browser (one per session: Playwright's sync API allows one at a time), and
screenshots written to build/screenshots/ for people to look at.

Registered for the whole suite by `pytest_plugins` in tests/conftest.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "build" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies); fails the test on any dialog, console error or CSP report."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    problems: list[str] = []
    confirms: list[str] = []

    def answer(dialog: Any) -> None:
        """Confirmations (forms marked data-confirm) are accepted and kept for the test; anything else,
        an alert() an escaped label failed to stop, is a problem."""
        if dialog.type == "confirm":
            confirms.append(dialog.message)
            dialog.accept()
        else:
            problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()

    tab.on("dialog", answer)
    tab.confirms = confirms
    # Error statuses (401, 404...) are logged as failed loads; anything else, a CSP violation say, is a problem.
    tab.on(
        "console",
        lambda message: (
            message.type == "error"
            and not message.text.startswith("Failed to load resource")
            and problems.append(f"console: {message.text}")
        ),
    )
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    yield tab
    context.close()
    assert problems == []


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """A fresh folder for this run's screenshots (build/ is ignored by git)."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


def shoot(page: Any, folder: Path, name: str, dark: bool = False) -> None:
    """The page at desktop and phone width (full length), light or dark."""
    scheme = "dark" if dark else "light"
    page.emulate_media(color_scheme=scheme)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(folder / f"{name}-{label}{'-dark' if dark else ''}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
    page.emulate_media(color_scheme="light")


# At phone width each table row is a card whose cells carry their column's name before the value
# (td[data-label]::before). The labels that touch the value they name: a label box (its used width)
# and the first line of the value on the same line with less than 4 px between them.
LABELS_TOUCHING_VALUES = """() => [...document.querySelectorAll('table.cards td[data-label]')]
  .filter(td => td.offsetParent !== null)
  .filter(td => {
    const cell = td.getBoundingClientRect();
    const style = getComputedStyle(td);
    const label = getComputedStyle(td, '::before');
    const labelRight = cell.left + parseFloat(style.paddingLeft) + parseFloat(label.width);
    const labelBottom = cell.top + parseFloat(style.paddingTop) + parseFloat(label.height);
    const range = document.createRange();
    range.selectNodeContents(td);
    const first = [...range.getClientRects()].find(r => r.width > 0);
    return first !== undefined && first.top < labelBottom && first.left < labelRight + 4;
  })
  .map(td => td.dataset.label + ': ' + td.textContent.trim())"""


def labels_touching_values(page: Any) -> list[str]:
    return page.evaluate(LABELS_TOUCHING_VALUES)


# Text whose contrast with what is behind it is below WCAG AA (4.5:1, or 3:1 for large text):
# every visible element with text of its own, against the first opaque background up its ancestors.
LOW_CONTRAST = """() => {
  const rgb = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return {c: p.slice(0, 3), a: p.length > 3 ? p[3] : 1};
  };
  const linear = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  const lum = ([r, g, b]) => 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const b = rgb(getComputedStyle(e).backgroundColor);
      if (b && b.a >= 1) return b.c;
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.offsetParent) continue;
    const texts = [...el.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim());
    if (!texts.length) continue;
    const style = getComputedStyle(el);
    const [hi, lo] = [lum(rgb(style.color).c), lum(background(el))].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) {
      const text = texts[0].textContent.trim().slice(0, 40);
      found.push(`${el.tagName.toLowerCase()}.${el.className} ${text}: ${ratio.toFixed(2)}`);
    }
  }
  return found;
}"""


def low_contrast(page: Any) -> list[str]:
    """The page's text below WCAG AA contrast in the current color scheme."""
    return page.evaluate(LOW_CONTRAST)
