#!/usr/bin/env bash
# Create .venv in the repository root and install the project into it (editable, with test tools).
# Re-runs the install only when setup.cfg changed since the last successful one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    echo "python3 cannot make a virtualenv here: installing Debian's python3-venv" >&2
    rm -rf .venv
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
    "$PYTHON" -m venv .venv
  fi
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import cloud_portal, flask, ansible_runner, openstack" # fails loudly if the install did
  touch "$stamp"
fi
