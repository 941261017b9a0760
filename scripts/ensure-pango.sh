#!/usr/bin/env bash
# Debian's Pango for WeasyPrint (the PDF statements): installed only where the libraries are missing.
set -euo pipefail
libs=$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p)
if ! grep -q 'libpango-1.0' <<<"$libs" || ! grep -q 'libpangoft2-1.0' <<<"$libs"; then
  echo "installing Debian's Pango for the PDF statements (WeasyPrint)" >&2
  [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock || true)" ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libpango-1.0-0 libpangoft2-1.0-0 >/dev/null
fi
