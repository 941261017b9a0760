"""What every journey step does with the page in front of it, and the keyboard-only helpers.

``look`` saves a screenshot under test-artifacts/screenshots/journey-*.png and runs axe on it;
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


def look(page: Any, name: str) -> dict[str, int]:
    """Screenshot the page as ``journey-<name>.png`` and check it with axe (fails on serious/critical)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    page.screenshot(path=str(SHOTS / f"journey-{slug}.png"), full_page=True)
    return check_page(page, name)


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
