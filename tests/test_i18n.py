"""English and Welsh: the Welsh catalogue is complete and pages switch language."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from cloud_portal import PACKAGE_DIR
from tests.conftest import REPO_ROOT

PO = PACKAGE_DIR / "translations" / "cy" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def test_every_string_in_the_code_is_in_the_welsh_catalogue(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "pybabel"), "-q", "extract", "-F", "babel.cfg",
                    "-k", "lazy_gettext", "-k", "_l", "-o", str(pot), "cloud_portal", "templates"], cwd=REPO_ROOT, check=True)
    with pot.open("rb") as f:
        wanted = {m.id for m in read_po(f) if m.id}
    assert len(wanted) > 150, "extraction found too few strings: check babel.cfg"
    assert "Sign in" in wanted and "Request a virtual machine" in wanted
    with PO.open("rb") as f:
        catalogue = read_po(f)
    translated = {m.id for m in catalogue if m.id and m.string and "fuzzy" not in m.flags}
    missing = sorted(wanted - translated)
    assert not missing, f"untranslated (run `make translations` and translate): {missing}"
    for message in catalogue:
        if message.id:
            assert set(PLACEHOLDER.findall(str(message.id))) == set(PLACEHOLDER.findall(str(message.string))), \
                message.id


def test_compiled_catalogue_is_up_to_date() -> None:
    with PO.open("rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id}
    with MO.open("rb") as f:
        mo = {m.id: m.string for m in read_mo(f) if m.id}
    assert po == mo, "messages.mo is stale: run `make translations`"


def test_switching_to_welsh(client: Any, auth: Any, make_user: Any) -> None:
    page = client.get("/sign-in").get_data(as_text=True)
    assert "Sign in" in page and 'lang="en"' in page
    client.post("/language", data={"lang": "cy", "next": "/sign-in"})
    page = client.get("/sign-in").get_data(as_text=True)
    assert "Mewngofnodi" in page and 'lang="cy"' in page
    user = make_user("member", "torfaen")
    auth.sign_in(user.email)
    home = client.get("/").get_data(as_text=True)
    assert "Cyngor Bwrdeistref Sirol Torfaen" in home  # the tenant's Welsh name
    assert "Neuadd llywodraeth leol" in home  # the data hall's Welsh name
    assert "Allgofnodi" in home
    client.post("/language", data={"lang": "xx", "next": "/"})  # an unknown language changes nothing
    assert "Allgofnodi" in client.get("/").get_data(as_text=True)


def test_browser_language_is_honoured(client: Any, synced: None) -> None:
    page = client.get("/sign-in", headers={"Accept-Language": "cy-GB,cy;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert "Mewngofnodi" in page
