"""axe-core (npm, installed by scripts/ensure-axe.sh) run inside a page Playwright has open: the
WCAG 2.2 A/AA rules, failing on any serious or critical violation. Every page checked, with its
counts by impact, is written to test-artifacts/axe.json for the closing note."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

REPORT = REPO_ROOT / "test-artifacts" / "axe.json"
#: The rule sets checked (axe's tags): WCAG 2.0, 2.1 and 2.2 at levels A and AA.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = ("serious", "critical")


def axe_script() -> Path:
    path = os.environ.get("CLOUD_PORTAL_AXE_JS") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cloud-portal/axe/node_modules/axe-core/axe.min.js")
    if not Path(path).is_file():
        pytest.fail(f"axe-core is not installed at {path}: `make test` installs it (scripts/ensure-axe.sh)")
    return Path(path)


def check_page(page: Any, name: str, *, record: bool = True) -> dict[str, int]:
    """Run axe on ``page`` as it is now; fail listing each serious or critical violation."""
    page.add_script_tag(path=str(axe_script()))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS)
    counts: dict[str, int] = {}
    for violation in result["violations"]:
        impact = violation.get("impact") or "minor"
        counts[impact] = counts.get(impact, 0) + len(violation["nodes"])
    if record:
        _record(name, page.url, counts, len(result["passes"]))
    blocking = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
                for v in result["violations"] if v.get("impact") in BLOCKING]
    assert not blocking, f"{name} ({page.url}):\n" + "\n".join(blocking)
    return counts


def _record(name: str, url: str, counts: dict[str, int], passes: int) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    report[name] = {"url": url, "violations_by_impact": counts, "rules_passed": passes}
    REPORT.write_text(json.dumps(report, indent=2, sort_keys=True))
