"""Benchmark: provisioning through the portal vs. openstacksdk directly, on the sandbox cloud.

Portal path: HTTP API (gunicorn) → quota reservation → SQLite queue → worker → ansible-runner
(create_server.yml) → Nova → ACTIVE seen by the worker → request active → client sees it.
Direct path: openstacksdk create_server + wait for ACTIVE with the same poll interval (0.25 s).

    .venv/bin/python bench/provision.py [--single 10] [--batch 20] [--worker-threads N]

Last line: JSON with single_portal_s, single_direct_s, single_overhead_s, single_ratio,
batch_portal_s, batch_direct_s, batch_ratio. Only 127.0.0.1 is contacted.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
POLL_S = 0.1


def sh(*args: str, env: dict[str, str]) -> str:
    return subprocess.run([PY, "-m", "cloud_portal.cli", *args], env=env, check=True, capture_output=True,
                          text=True).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def portal_create(base: str, token: str, hall: str) -> tuple[float, int]:
    started = time.perf_counter()
    created = api(base, token, "POST", "/api/v1/requests",
                  {"kind": "vm", "size": "small", "image": "debian-12", "data_hall": hall,
                   "name": f"bench-{uuid.uuid4().hex[:8]}"})
    while True:
        state = api(base, token, "GET", f"/api/v1/requests/{created['id']}")
        if state["state"] == "active":
            return time.perf_counter() - started, state["server_id"]
        if state["state"] in ("failed", "rejected", "cancelled"):
            raise RuntimeError(f"request {created['id']} {state['state']}: {state['reason']}")
        time.sleep(POLL_S)


def portal_delete(base: str, token: str, server_id: int) -> None:
    api(base, token, "POST", f"/api/v1/servers/{server_id}/actions", {"action": "delete"})


def direct_create(conn: Any, ids: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    server = conn.compute.create_server(name=f"direct-{uuid.uuid4().hex[:8]}", flavor_id=ids["flavor"],
                                        image_id=ids["image"], networks=[{"uuid": ids["network"]}],
                                        availability_zone=ids["az"])
    conn.compute.wait_for_server(server, status="ACTIVE", interval=0.25, wait=300)
    return time.perf_counter() - started, server.id


def parallel(fn: Any, count: int) -> tuple[float, list[Any]]:
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--worker-threads", type=int, default=8)
    args = parser.parse_args()

    out = subprocess.run([str(REPO / "sandbox" / "sandboxctl"), "start"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"sandbox did not start:\n{out.stdout}\n{out.stderr}")
    clouds = next(line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("CLOUDS_YAML="))
    instance = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    env = {**os.environ, "CLOUD_PORTAL_INSTANCE_PATH": str(instance), "CLOUD_PORTAL_CLOUDS_YAML": clouds,
           "CLOUD_PORTAL_TENANTS_FILE": str(REPO / "tenants.yaml"), "CLOUD_PORTAL_SECRET_KEY": "b" * 40,
           "CLOUD_PORTAL_RECONCILE_INTERVAL_MINUTES": "0", "CLOUD_PORTAL_LOG_LEVEL": "WARNING",
           "CLOUD_PORTAL_TENANT_CONCURRENCY": str(args.worker_threads)}
    sh("init", env=env)
    sh("tenants", "sync", env=env)
    # Swansea University has room for 10 servers a person: one account per 5 servers.
    tokens = []
    for i in range(max(1, (args.batch + 4) // 5)):
        email = f"bench{i}@swansea.ac.uk"
        sh("users", "add", email, "--name", f"Bench {i}", "--role", "member", "--tenant", "swansea-university", env=env)
        tokens.append(sh("users", "token", email, "--name", "bench", env=env).strip().split()[-1])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = subprocess.Popen([str(Path(PY).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
                            "--threads", "8", "--no-control-socket", "cloud_portal:create_app()"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker = subprocess.Popen([PY, "-m", "cloud_portal.cli", "worker", "--threads", str(args.worker_threads)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)  # noqa: S310 - loopback only
                break
            except OSError:
                time.sleep(0.2)
        import openstack
        from openstack import config as os_config
        region = os_config.OpenStackConfig(config_files=[clouds]).get_one(
            cloud="cwmwl-sandbox", auth={"project_name": "cwmwl-swansea-university", "project_domain_name": "Default"})
        conn = openstack.connection.Connection(config=region)
        ids = {"flavor": conn.compute.find_flavor("cc.small").id, "image": conn.image.find_image("debian-12").id,
               "network": conn.network.find_network("shared-net").id, "az": "education"}
        # Warm both paths (first boot after a start is slow for everyone).
        _, sid = portal_create(base, tokens[0], "education")
        portal_delete(base, tokens[0], sid)
        _, did = direct_create(conn, ids)
        conn.compute.delete_server(did)

        portal_single, direct_single = [], []
        for i in range(args.single):
            seconds, sid = portal_create(base, tokens[i % len(tokens)], "education")
            portal_single.append(seconds)
            portal_delete(base, tokens[i % len(tokens)], sid)
            seconds, did = direct_create(conn, ids)
            direct_single.append(seconds)
            conn.compute.delete_server(did)
            print(f"single {i + 1}: portal {portal_single[-1]:.2f}s direct {direct_single[-1]:.2f}s", flush=True)
        time.sleep(3)  # let deletes finish before the batch

        batch_portal, made = parallel(lambda c=iter(range(10**6)): portal_create(
            base, tokens[next(c) % len(tokens)], "education"), args.batch)
        print(f"batch portal: {args.batch} servers in {batch_portal:.2f}s", flush=True)
        for i, (_, sid) in enumerate(made):
            portal_delete(base, tokens[i % len(tokens)], sid)
        time.sleep(5)
        batch_direct, direct_made = parallel(lambda: direct_create(conn, ids), args.batch)
        print(f"batch direct: {args.batch} servers in {batch_direct:.2f}s", flush=True)
        for _, did in direct_made:
            conn.compute.delete_server(did)
    finally:
        for proc in (web, worker):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in (web, worker):
            proc.wait(timeout=30)
        shutil.rmtree(instance, ignore_errors=True)
    ps, ds = statistics.median(portal_single), statistics.median(direct_single)
    print(json.dumps({"single_portal_s": round(ps, 3), "single_direct_s": round(ds, 3),
                      "single_overhead_s": round(ps - ds, 3), "single_ratio": round(ps / ds, 3),
                      "batch_portal_s": round(batch_portal, 3), "batch_direct_s": round(batch_direct, 3),
                      "batch_ratio": round(batch_portal / batch_direct, 3), "batch_size": args.batch,
                      "single_runs": args.single, "worker_threads": args.worker_threads}))


if __name__ == "__main__":
    main()
