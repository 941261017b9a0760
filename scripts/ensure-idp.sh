#!/usr/bin/env bash
# The demo and test identity provider's one dependency: npm's `oidc-provider` (an OpenID
# Certified server), installed once into a cache folder outside the repository.
# Prints that folder (OIDC_PROVIDER_HOME for sandbox/idp/provider.mjs) as the last line.
set -euo pipefail
here=$(dirname "$0")
exec bash "$here/ensure-npm-package.sh" oidc-provider 9.5.2 \
  "${CLOUD_PORTAL_IDP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloud-portal/idp}"
