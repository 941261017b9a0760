"""What every journey step does with the page in front of it, and the keyboard-only helpers.

``look`` saves a screenshot under test-artifacts/screenshots/journey-*.png and runs axe on it, in
English and in Welsh (where no English may be left);
``tab_to`` moves through a page with the Tab key alone, checking at every stop that the focus
can be seen.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.conftest import REPO_ROOT
from tests.e2e.accessibility import check_page
from tests.english_words import english_words_left

SHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
DURATIONS = REPO_ROOT / "test-artifacts" / "journeys.json"

#: What the focused element looks like, read in the page (no mouse involved).
_FOCUSED = """() => {
  const e = document.activeElement; const s = getComputedStyle(e);
  return {tag: e.tagName.toLowerCase(), name: e.getAttribute('name') || '', type: e.getAttribute('type') || '',
          text: (e.innerText || e.value || '').trim().slice(0, 80), href: e.getAttribute('href') || '',
          outlineStyle: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) || 0,
          outlineColor: s.outlineColor, background: s.backgroundColor, boxShadow: s.boxShadow};
}"""
FOCUS_YELLOW = "rgb(255, 221, 0)"
#: Names that stay as they were given on a Welsh page: the demo accounts' display names
#: ("Member (Torfaen County ...)").
NAMES_AS_GIVEN = ("Member (", "Tenant Admin (", "Platform Admin (", "Finance (")


def look(page: Any, name: str, *, also_allowed: tuple[str, ...] = ()) -> None:
    """Screenshot the page as ``journey-<name> (en).png`` and check it with axe (fails on serious
    or critical violations); then the same address in Welsh, in a second tab of the same session
    (so the journey's own tab keeps its page): screenshot, axe, and no English words left
    (``also_allowed``: what people typed in English, such as a reason, which stays as typed)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"journey-{_slug(name)}-en.png"), full_page=True)
    check_page(page, f"{name} (en)")
    welsh = page.context.new_page()
    try:
        welsh.goto(page.url)
        welsh.click("header .lang button[lang=cy]")
        welsh.wait_for_selector("html[lang=cy]")
        welsh.screenshot(path=str(SHOTS / f"journey-{_slug(name)}-cy.png"), full_page=True)
        check_page(welsh, f"{name} (cy)")
        # The language switcher names English in English, as it should (lang="en").
        text = welsh.locator("body").inner_text().replace("English", " ")
        left = english_words_left(text, also_allowed=(*NAMES_AS_GIVEN, *also_allowed))
        assert not left, f"English on the Welsh {name} page ({welsh.url}): {left}"
    finally:
        if welsh.locator("header .lang button[lang=en]").count():
            welsh.click("header .lang button[lang=en]")  # the session back in English for the journey
            welsh.wait_for_selector("html[lang=en]")
        welsh.close()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def focus_is_visible(focused: dict[str, Any]) -> bool:
    """A focus indicator a sighted keyboard user can see: a solid outline at least 2 px wide in a
    colour that is not transparent, or the yellow focus background links get."""
    outline = (focused["outlineStyle"] not in ("none", "hidden") and focused["outlineWidth"] >= 2
               and focused["outlineColor"] not in ("transparent", "rgba(0, 0, 0, 0)"))
    return outline or focused["background"] == FOCUS_YELLOW


def tab_to(page: Any, wanted: Callable[[dict[str, Any]], bool], what: str, limit: int = 80) -> dict[str, Any]:
    """Press Tab until the focused element is ``wanted``; every element passed on the way must show
    its focus. Returns the wanted element's description."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        if focused["tag"] != "body":
            assert focus_is_visible(focused), f"focus cannot be seen on {focused} ({page.url})"
        seen.append(f"{focused['tag']}:{focused['name'] or focused['text'][:30]}")
        if wanted(focused):
            return focused
    raise AssertionError(f"{what} not reached with Tab on {page.url}; went through {seen}")


def record_duration(journey: str, seconds: float) -> None:
    """Keep each journey's wall-clock time in test-artifacts/journeys.json (for the closing note)."""
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    report[journey] = round(seconds, 1)
    DURATIONS.write_text(json.dumps(report, indent=2, sort_keys=True))
