#!/usr/bin/env bash
# Debian's Pango and HarfBuzz's font subsetter for WeasyPrint (the PDF statements): installed
# only where the libraries are missing. Without libharfbuzz-subset WeasyPrint falls back to
# fontTools, which stamps each embedded font with the wall clock: the same statement would then
# not give the same bytes twice.
set -euo pipefail
libs=$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p)
if ! grep -q 'libpango-1.0' <<<"$libs" || ! grep -q 'libpangoft2-1.0' <<<"$libs" \
    || ! grep -q 'libharfbuzz-subset' <<<"$libs"; then
  echo "installing Debian's Pango and HarfBuzz subsetter for the PDF statements (WeasyPrint)" >&2
  [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock || true)" ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 >/dev/null
fi
