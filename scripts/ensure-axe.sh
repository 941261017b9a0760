#!/usr/bin/env bash
# The browser tests' accessibility checker: npm's `axe-core` (Deque's WCAG rules, run inside the
# page), installed once into a cache folder outside the repository.
# Prints the path of axe.min.js (CLOUD_PORTAL_AXE_JS for tests/e2e) as the last line.
set -euo pipefail
here=$(dirname "$0")
home=$(bash "$here/ensure-npm-package.sh" axe-core 4.10.3 \
  "${CLOUD_PORTAL_AXE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloud-portal/axe}" | tail -1)
echo "$home/node_modules/axe-core/axe.min.js"
