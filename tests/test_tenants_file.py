"""tenants.yaml validation: every broken file names the file, the path inside it and the reason."""
from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_portal.errors import InvalidConfig
from cloud_portal.tenants.config_file import load_tenants_file, parse_tenants_text
from tests.conftest import TENANTS_FILE

GOOD = yaml.safe_load(TENANTS_FILE.read_text())


def test_the_shipped_file_is_valid() -> None:
    doc = load_tenants_file(TENANTS_FILE)
    slugs = {t.slug for t in doc.tenants}
    assert {"torfaen", "monmouthshire", "blaenau-gwent", "gwent-police", "nhs-wales",
            "swansea-university"} <= slugs
    assert {h.key for h in doc.data_halls} == {"nhs", "education", "local-government", "police"}
    police = next(t for t in doc.tenants if t.slug == "gwent-police")
    assert police.data_halls == ["police"]
    prices = [d.monthly_price for d in doc.catalog.desktops]
    assert min(prices) >= 30 and max(prices) <= 60


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = _split(path)
        target = doc
        for part in parents:
            target = target[part]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return change


def _split(path: str) -> list[Any]:
    parts: list[Any] = []
    for chunk in path.replace("]", "").split("."):
        name, *indexes = chunk.split("[")
        parts.append(name)
        parts.extend(int(i) for i in indexes)
    return parts


_DELETE = object()

BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("negative vcpus", _set("tenants[3].quotas.vcpus", -4), "tenants[3].quotas.vcpus", "greater than 0"),
    ("vcpus as text", _set("tenants[0].quotas.vcpus", "lots"), "tenants[0].quotas.vcpus", "whole number"),
    ("missing quota", _set("tenants[1].quotas.ram_mib", _DELETE), "tenants[1].quotas.ram_mib",
     "required but missing"),
    ("misspelt key", _set("tenants[2].quotas.vpcus", 4), "tenants[2].quotas.vpcus", "not a known key"),
    ("unknown data hall", _set("tenants[0].data_halls", ["local-government", "mars"]),
     "tenants[0].data_halls[1]", "'mars' is not a data hall"),
    ("no data halls", _set("tenants[4].data_halls", []), "tenants[4].data_halls", "must not be empty"),
    ("duplicate slug", _set("tenants[1].slug", "torfaen"), "tenants[1].slug", "used twice"),
    ("bad slug", _set("tenants[0].slug", "Torfaen Council"), "tenants[0].slug", "lowercase letters"),
    ("reserved slug", _set("tenants[0].slug", "platform"), "tenants[0].slug", "reserved"),
    ("bad cost centre", _set("tenants[5].cost_centre", "su iss"), "tenants[5].cost_centre", "capital letters"),
    ("missing Welsh name", _set("tenants[2].name_cy", _DELETE), "tenants[2].name_cy", "required but missing"),
    ("per-user above tenant", _set("tenants[0].per_user_quotas.vcpus", 500),
     "tenants[0].per_user_quotas.vcpus", "above the tenant limit"),
    ("float money", _set("tenants[0].approval.monthly_cost_over", 250.5),
     "tenants[0].approval.monthly_cost_over", "in quotes"),
    ("money not a number", _set("catalog.desktops[0].monthly_price", "thirty"),
     "catalog.desktops[0].monthly_price", "not an amount"),
    ("desktop image unknown", _set("catalog.desktops[1].image", "windows-95"),
     "catalog.desktops[1].image", "not an image key"),
    ("desktop disk below image minimum", _set("catalog.desktops[1].disk_gb", 20),
     "catalog.desktops[1].disk_gb", "smaller than image"),
    ("desktop on a VM image", _set("catalog.desktops[0].image", "debian-12"),
     "catalog.desktops[0].image", "VM image"),
    ("flavor defined twice differently", _set("catalog.vm_sizes[1].flavor", "cc.small"),
     "catalog.vm_sizes[1].flavor", "defined with other"),
    ("wrong currency", _set("rate_card.currency", "EUR"), "rate_card.currency", "must be 'GBP'"),
    ("desktops above instances", _set("tenants[0].quotas.desktops", 61), "tenants[0].quotas.desktops",
     "exceeds the tenant's"),
    ("zero memory", _set("catalog.vm_sizes[0].ram_mib", 0), "catalog.vm_sizes[0].ram_mib", "at least 256"),
    ("unknown version", _set("version", 2), "version", "must be 1"),
    ("tenants not a list", _set("tenants", {"slug": "x"}), "tenants", "must be a list"),
    ("boolean as number", _set("tenants[0].quotas.instances", True), "tenants[0].quotas.instances",
     "whole number"),
]


@pytest.mark.parametrize("label,change,path,reason", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_names_path_and_reason(tmp_path: Path, label: str, change: Any, path: str,
                                           reason: str) -> None:
    doc = copy.deepcopy(GOOD)
    change(doc)
    file = tmp_path / "tenants.yaml"
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InvalidConfig) as caught:
        load_tenants_file(file)
    lines = str(caught.value).splitlines()
    matching = [line for line in lines if line.startswith(f"{file}: {path}: ")]
    assert matching, f"no line for {path} in:\n{caught.value}"
    assert any(reason in line for line in matching), f"{reason!r} not in {matching}"


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "tenants.yaml"
    file.write_text("version: 1\ntenants:\n  - slug: [unclosed\n")
    with pytest.raises(InvalidConfig, match=r"tenants.yaml: line \d+, column \d+: not valid YAML"):
        load_tenants_file(file)


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="file not found.*CLOUD_PORTAL_TENANTS_FILE"):
        load_tenants_file(tmp_path / "nope.yaml")


def test_empty_file_is_refused() -> None:
    with pytest.raises(InvalidConfig, match=r"x.yaml: \(top level\): must be a mapping"):
        parse_tenants_text("", "x.yaml")


def test_every_problem_is_listed_at_once() -> None:
    doc = copy.deepcopy(GOOD)
    doc["tenants"][0]["quotas"]["vcpus"] = -1
    doc["tenants"][1]["cost_centre"] = "x"
    with pytest.raises(InvalidConfig) as caught:
        parse_tenants_text(yaml.safe_dump(doc), "t.yaml")
    assert "tenants[0].quotas.vcpus" in str(caught.value)
    assert "tenants[1].cost_centre" in str(caught.value)


def test_check_command_exit_codes(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "cloud_portal.cli", "check", "--tenants"]
    ok = subprocess.run(cli + [str(TENANTS_FILE)], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "OK (6 tenants" in ok.stdout
    doc = copy.deepcopy(GOOD)
    doc["tenants"][3]["quotas"]["vcpus"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    failed = subprocess.run(cli + [str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert failed.returncode == 1
    assert f"{bad}: tenants[3].quotas.vcpus: must be greater than 0" in failed.stderr
