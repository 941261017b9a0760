"""The ansible-runner adapter with real Ansible (no cloud needed): values reach playbooks as
plain text, never templated; events become steps; the watchdog stops a run; no secret lands
in the runner's folder."""
from __future__ import annotations

from pathlib import Path

import pytest

from cloud_portal.adapters.ansible import prune_artifacts, run_playbook, write_extravars

HOSTILE = [
    "{{ lookup('pipe','touch MARKER') }}",
    "{% raw %}{{ lookup('pipe','touch MARKER') }}{% endraw %}",
    "$(touch MARKER)",
    "; touch MARKER",
    "`touch MARKER`",
    "ünïcødé – “quotes” \\ backslash",
    "line\nbreak",
]

ECHO_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the value as received
      ansible.builtin.copy:
        content: "{{ value }}"
        dest: "{{ out }}"
"""

SLEEP_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Take a long time
      ansible.builtin.command: sleep 30
"""


@pytest.fixture
def playbooks(tmp_path: Path) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "echo.yml").write_text(ECHO_PLAYBOOK)
    (folder / "sleep.yml").write_text(SLEEP_PLAYBOOK)
    return folder


def test_hostile_strings_arrive_verbatim_and_never_run(tmp_path: Path, playbooks: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {}\n")
    marker = tmp_path / "MARKER"
    for i, raw in enumerate(HOSTILE):
        value = raw.replace("MARKER", str(marker))
        out = tmp_path / f"out-{i}.txt"
        steps = []
        result = run_playbook("echo.yml", {"value": value, "out": str(out)}, job_id=f"job-{i}",
                              data_root=tmp_path / "runs", clouds_yaml=clouds, cloud_name="x", timeout_s=60,
                              on_event=steps.append, playbook_dir=playbooks)
        assert result.ok, result.failure_message
        assert out.read_text() == value
        assert [s.status for s in steps] == ["started", "changed"]
        assert steps[0].task == "Write the value as received"
    assert not marker.exists(), "a payload was executed"


def test_extravars_file_marks_every_string_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "extravars"
    write_extravars(path, {"name": "web-01", "meta": {"k": "v"}, "items": [{"a": "b", "n": 2}], "count": 3})
    text = path.read_text()
    assert text.count("!unsafe") == 3  # web-01, v, b: every string, at any depth
    assert oct(path.stat().st_mode)[-3:] == "600"
    with pytest.raises(ValueError, match="not an identifier"):
        write_extravars(path, {"bad key": "x"})


def test_watchdog_stops_a_run_that_takes_too_long(tmp_path: Path, playbooks: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {}\n")
    result = run_playbook("sleep.yml", {}, job_id="slow", data_root=tmp_path / "runs", clouds_yaml=clouds,
                          cloud_name="x", timeout_s=3, playbook_dir=playbooks)
    assert result.status == "timeout"
    assert result.duration_s < 20
    assert result.failure_message == "the playbook did not finish in time"


def test_no_secret_in_runner_folder(tmp_path: Path, playbooks: Path) -> None:
    secret = "s3cret-password-value"
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(f"clouds:\n  x:\n    auth:\n      password: {secret}\n")
    result = run_playbook("echo.yml", {"value": "ok", "out": str(tmp_path / "o.txt")}, job_id="secret-check",
                          data_root=tmp_path / "runs", clouds_yaml=clouds, cloud_name="x", timeout_s=60,
                          playbook_dir=playbooks)
    assert result.ok
    run_dir = tmp_path / "runs" / "secret-check"
    assert (run_dir / "artifacts" / "secret-check").is_dir()  # ident = job id
    for file in run_dir.rglob("*"):
        if file.is_file():
            assert secret not in file.read_text(errors="replace"), file
    assert prune_artifacts(tmp_path / "runs", keep_days=30) == 0
    assert prune_artifacts(tmp_path / "runs", keep_days=-1) == 1


def test_no_secret_of_the_worker_reaches_the_run_or_its_artifacts(tmp_path: Path, playbooks: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ansible-runner seeds a run's environment with the worker's own and writes it to
    artifacts/<job>/command; the worker's secrets must be in neither."""
    markers = {"CLOUD_PORTAL_SECRET_KEY": "marker-secret-key-4f1c",
               "CLOUD_PORTAL_DATABASE_URL": "postgresql://portal:marker-db-password-9a2e@127.0.0.1/portal",
               "CLOUD_PORTAL_SMTP_PASSWORD": "marker-smtp-password-77b0",
               "OS_PASSWORD": "marker-os-password-c3d8"}
    for name, value in markers.items():
        monkeypatch.setenv(name, value)
    dump = tmp_path / "env.txt"
    (playbooks / "env.yml").write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the environment the playbook sees
      ansible.builtin.shell: env > {dump}
""")
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  x:\n    auth: {}\n")
    result = run_playbook("env.yml", {}, job_id="env-check", data_root=tmp_path / "runs", clouds_yaml=clouds,
                          cloud_name="x", timeout_s=60, playbook_dir=playbooks)
    assert result.ok, result
    seen = dump.read_text()
    assert "OS_CLOUD=x" in seen and f"OS_CLIENT_CONFIG_FILE={clouds}" in seen  # what Ansible needs is there
    files = [f for f in (tmp_path / "runs" / "env-check").rglob("*") if f.is_file()]
    assert any(f.name == "command" for f in files)
    for value in markers.values():
        secret = value.split(":")[-1].split("@")[0] if "@" in value else value
        assert secret not in seen
        for file in files:
            assert secret not in file.read_text(errors="replace"), (secret, file)
