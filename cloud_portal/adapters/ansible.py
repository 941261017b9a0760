"""Running the portal's playbooks with ansible-runner: one run per job, in its own folder.

What goes in: validated values only, written to ``env/extravars`` with every string tagged
``!unsafe`` so Ansible never templates it (a name like ``{{ lookup('pipe','id') }}`` stays
text).  No secret goes in: the cloud is named by ``OS_CLOUD`` and its ``clouds.yaml`` by
``OS_CLIENT_CONFIG_FILE`` (paths, not passwords), which is all runner writes to ``env/``; the
playbook's environment holds nothing of the worker's own (:func:`playbook_environment`), so no
secret of the worker reaches the run or its artifacts.
What comes out: the Runner's events, turned into :class:`PlaybookEvent` rows as they happen,
and a :class:`PlaybookResult`; we never parse stdout.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ansible_runner
import ansible_runner.interface

log = logging.getLogger(__name__)

PLAYBOOK_DIR = Path(__file__).resolve().parent.parent.parent / "playbooks"
#: Event types that become progress rows (task start and each host's outcome).
_TASK_EVENTS = {
    "playbook_on_task_start": "started",
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
ExtraValue = str | int | bool | None | list[Any] | dict[str, Any]


@dataclass(frozen=True)
class PlaybookEvent:
    """One step of a run, as the requester sees it."""

    task: str
    host: str
    #: started | ok | changed | failed | skipped | unreachable
    status: str
    at: datetime
    #: For failures: the module's message (plain words are made from it by the caller).
    message: str | None = None
    #: For ok/changed: the module's result (registered output), for reading ids.
    result: dict[str, Any] | None = None


@dataclass
class PlaybookResult:
    #: successful | failed | timeout | canceled
    status: str
    rc: int | None
    events: list[PlaybookEvent] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "successful"

    @property
    def failure_message(self) -> str | None:
        for event in reversed(self.events):
            if event.status in {"failed", "unreachable"}:
                return event.message or f"task '{event.task}' failed"
        if self.status == "timeout":
            return "the playbook did not finish in time"
        if not self.ok:
            return f"the playbook ended with status {self.status} (rc={self.rc})"
        return None

    def result_of(self, task: str) -> dict[str, Any] | None:
        """The module result of the last successful run of ``task`` (by task name)."""
        for event in reversed(self.events):
            if event.task == task and event.status in {"ok", "changed"} and event.result is not None:
                return event.result
        return None


def _unsafe_yaml(value: ExtraValue) -> str:
    """Render a value as YAML; every string is tagged !unsafe (JSON strings are valid YAML)."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return json.dumps(value)
    if isinstance(value, str):
        return "!unsafe " + json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(_unsafe_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_unsafe_yaml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"extra var of type {type(value).__name__} is not allowed")


def write_extravars(path: Path, variables: Mapping[str, ExtraValue]) -> None:
    lines = []
    for key, value in variables.items():
        if not key.isidentifier():
            raise ValueError(f"extra var name {key!r} is not an identifier")
        lines.append(f"{key}: {_unsafe_yaml(value)}")
    path.write_text("\n".join(lines) + "\n" if lines else "{}\n")
    path.chmod(0o600)


def _event_message(data: dict[str, Any]) -> str | None:
    res = data.get("res") or {}
    message = res.get("msg") or res.get("message") or res.get("stderr")
    if isinstance(message, (dict, list)):
        message = json.dumps(message)[:2000]
    return str(message)[:2000] if message else None


def run_playbook(playbook: str, variables: Mapping[str, ExtraValue], *, job_id: str, data_root: Path,
                 clouds_yaml: Path, cloud_name: str, timeout_s: float,
                 on_event: Callable[[PlaybookEvent], None] | None = None,
                 playbook_dir: Path = PLAYBOOK_DIR) -> PlaybookResult:
    """Run ``playbooks/<playbook>`` once for job ``job_id`` and return its outcome.

    The run has its own private data dir ``data_root/<job_id>`` (``ident`` = job id), so its
    artifacts can be kept for audit.  Our own watchdog cancels the run after ``timeout_s``.
    """
    source = playbook_dir / playbook
    if not source.is_file():
        raise FileNotFoundError(f"no playbook {playbook} in {playbook_dir}")
    private = data_root / job_id
    (private / "env").mkdir(parents=True, exist_ok=True)
    project = private / "project"
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(playbook_dir, project)
    (private / "inventory").mkdir(exist_ok=True)
    (private / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    write_extravars(private / "env" / "extravars", variables)
    venv_bin = str(Path(sys.executable).parent)
    envvars = {
        # ansible-runner starts ansible-playbook from PATH: put this interpreter's bin first.
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
        "OS_CLOUD": cloud_name,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        # Start-up trimmed: our inventory is one ini line, so don't try the other plugins.
        "ANSIBLE_INVENTORY_ENABLED": "ini",
    }
    events: list[PlaybookEvent] = []
    started = time.monotonic()
    deadline = started + timeout_s
    timed_out = threading.Event()

    def cancel_callback() -> bool:
        if time.monotonic() > deadline:
            timed_out.set()
            return True
        return False

    def event_handler(event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        status = _TASK_EVENTS.get(kind)
        if status is None:
            return True
        data = event.get("event_data") or {}
        res = data.get("res") if isinstance(data.get("res"), dict) else None
        if status == "ok" and res and res.get("changed"):
            status = "changed"
        item = PlaybookEvent(
            task=str(data.get("task") or data.get("name") or "")[:200],
            host=str(data.get("host") or "")[:100], status=status, at=datetime.now(UTC),
            message=_event_message(data) if status in {"failed", "unreachable"} else None,
            result=res if status in {"ok", "changed"} else None)
        events.append(item)
        if on_event is not None:
            try:
                on_event(item)
            except Exception:  # noqa: BLE001 - progress reporting must never break the run
                log.exception("progress handler failed for job %s", job_id)
        return True

    runner = ansible_runner.interface.init_runner(
        private_data_dir=str(private), playbook=playbook, ident=job_id, envvars=envvars,
        quiet=True, event_handler=event_handler, cancel_callback=cancel_callback,
        # pexpect_timeout: how often runner asks our watchdog (cancel_callback) whether to stop.
        settings={"suppress_ansible_output": True, "job_timeout": int(timeout_s) + 30, "pexpect_timeout": 1})
    # Runner seeds the playbook's environment with the worker's whole environment and writes it to
    # artifacts/<job>/command: the secret key, database and SMTP passwords, any OS_* password.
    # Keep only what Ansible needs (ours, runner's own settings, and a few harmless basics).
    runner.config.env = playbook_environment(runner.config.env, envvars)
    runner.run()
    status = "timeout" if timed_out.is_set() else runner.status
    result = PlaybookResult(status=status, rc=runner.rc, events=events,
                            duration_s=time.monotonic() - started)
    # The copied playbooks are not evidence; the artifacts (events, status, rc) are kept.
    shutil.rmtree(project, ignore_errors=True)
    log.info("playbook %s job %s: %s in %.1fs", playbook, job_id, status, result.duration_s)
    return result


#: Inherited variables a playbook may keep (no secrets: locale, home and temp folders, user name).
_INHERITED_ALLOWED = frozenset({"HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TMPDIR", "USER", "LOGNAME", "TZ"})


def playbook_environment(prepared: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """The environment a playbook runs with: ``prepared`` (runner's, seeded from the worker's own
    environment) without anything inherited from the worker, except the basics above."""
    return {key: value for key, value in prepared.items()
            if key in ours or key in _INHERITED_ALLOWED or os.environ.get(key) != value}


def prune_artifacts(data_root: Path, keep_days: int) -> int:
    """Delete run folders older than ``keep_days``; returns how many were removed."""
    if not data_root.is_dir():
        return 0
    cutoff = time.time() - timedelta(days=keep_days).total_seconds()
    removed = 0
    for run_dir in data_root.iterdir():
        if run_dir.is_dir() and run_dir.stat().st_mtime < cutoff:
            shutil.rmtree(run_dir, ignore_errors=True)
            removed += 1
    return removed
