"""Benchmark the sandbox cloud: start times, memory, and time to ACTIVE for one server.

    .venv/bin/python bench/sandbox.py            # warm start, RSS, time-to-ACTIVE
    .venv/bin/python bench/sandbox.py --cold     # also a cold start (install included)

Cold start: the running sandbox is stopped and a brand-new sandbox home is made in a temporary
folder (CLOUD_PORTAL_SANDBOX_HOME), so the virtualenvs are installed from PyPI (pip's download
cache is bypassed unless --pip-cache) and every schema is created; the main cache is left alone.
The temporary home is purged afterwards (its processes, databases and files).
Warm start: ``sandboxctl stop`` then ``sandboxctl start`` on the usual home.
"Start" figures are to every API answering (what sandboxctl reports); "ready" figures are until
``sandboxctl start`` returns (Nova services up and seed checked).
RSS: the sum over every process the sandbox started (an already running MariaDB/RabbitMQ that the
sandbox merely uses is not counted). Time to ACTIVE: openstacksdk create_server + wait for
ACTIVE with a port on shared-net, sequential, after one untimed warm-up boot, median of --boots
(10); each server is deleted before the next.

The last line of output is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SANDBOXCTL = REPO_ROOT / "sandbox" / "sandboxctl"
DEFAULT_HOME = Path.home() / ".cache" / "cloud-portal" / "sandbox"


def sandboxctl(command: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(SANDBOXCTL), command],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"sandboxctl {command} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def apis_answer_seconds(output: str) -> float | None:
    found = re.findall(r"all APIs answer \(([\d.]+)s\)", output)
    return float(found[-1]) if found else None


def start_figures(label: str, env: dict[str, str] | None = None) -> tuple[float | None, float]:
    ready, out = sandboxctl("start", env)
    for line in out.splitlines():
        print(f"  | {line}", flush=True)
    apis = apis_answer_seconds(out)
    print(f"{label} start: all APIs answer after {apis}s; ready (seeded) after {ready:.1f}s", flush=True)
    return apis, ready


def sandbox_rss_mb(home: Path) -> float:
    """Resident memory of every process in the sessions the sandbox started (run/*.pid)."""
    sessions = set()
    for pidfile in (home / "run").glob("*.pid"):
        try:
            sessions.add(int(pidfile.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    total_kb = 0
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            stat = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[3]) not in sessions:
                continue
            for line in (proc_dir / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total_kb / 1024


def time_to_active(clouds_yaml: Path, boots: int) -> list[float]:
    import openstack
    from openstack import config as os_config

    region = os_config.OpenStackConfig(config_files=[str(clouds_yaml)]).get_one(cloud="cwmwl-sandbox")
    conn = openstack.connection.Connection(config=region)
    flavor = conn.compute.find_flavor("cc.small", ignore_missing=False)
    image = conn.image.find_image("debian-12", ignore_missing=False)
    net = conn.network.find_network("shared-net", ignore_missing=False)
    times = []
    # One untimed warm-up boot: the first after a start also pays for caches and connections.
    for i in range(-1, boots):
        name = f"bench-{uuid.uuid4().hex[:8]}"
        t0 = time.monotonic()
        server = conn.compute.create_server(
            name=name, flavor_id=flavor.id, image_id=image.id, networks=[{"uuid": net.id}]
        )
        try:
            conn.compute.wait_for_server(server, status="ACTIVE", interval=0.2, wait=300)
            elapsed = time.monotonic() - t0
            if i < 0:
                print(f"warm-up boot: ACTIVE after {elapsed:.2f}s", flush=True)
            else:
                times.append(elapsed)
                print(f"boot {i + 1}/{boots}: ACTIVE after {elapsed:.2f}s", flush=True)
        finally:
            conn.compute.delete_server(server, ignore_missing=True)
            conn.compute.wait_for_delete(server, interval=0.2, wait=300)
    conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="also measure a cold start in a temporary home")
    parser.add_argument("--pip-cache", action="store_true", help="let the cold install use pip's download cache")
    parser.add_argument("--boots", type=int, default=10, help="servers to boot for time-to-ACTIVE (median)")
    args = parser.parse_args()
    home = Path(os.environ.get("CLOUD_PORTAL_SANDBOX_HOME") or DEFAULT_HOME).expanduser()
    result: dict[str, object] = {"cold_start_s": None, "cold_ready_s": None}

    if args.cold:
        sandboxctl("stop")  # the ports are shared: the main sandbox cannot run beside it
        cold_home = Path(tempfile.mkdtemp(prefix="cwsbx-cold-"))
        cold_env = {"CLOUD_PORTAL_SANDBOX_HOME": str(cold_home)}
        if not args.pip_cache:
            cold_env["PIP_NO_CACHE_DIR"] = "1"
        try:
            result["cold_start_s"], result["cold_ready_s"] = start_figures("cold", cold_env)
        finally:
            sandboxctl("purge", cold_env)
        result["cold_pip_cache"] = args.pip_cache

    sandboxctl("start")  # make sure the main sandbox is installed and seeded first
    sandboxctl("stop")
    result["warm_start_s"], result["warm_ready_s"] = start_figures("warm")
    rss = sandbox_rss_mb(home)
    print(f"resident memory of the sandbox's processes: {rss:.0f} MB", flush=True)
    result["rss_mb"] = round(rss)

    times = time_to_active(home / "clouds.yaml", args.boots)
    result.update(
        time_to_active_median_s=round(statistics.median(times), 2),
        time_to_active_min_s=round(min(times), 2),
        time_to_active_max_s=round(max(times), 2),
        boots=len(times),
    )
    for key in ("cold_start_s", "cold_ready_s", "warm_start_s", "warm_ready_s"):
        if isinstance(result[key], float):
            result[key] = round(result[key], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
