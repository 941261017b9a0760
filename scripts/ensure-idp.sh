#!/usr/bin/env bash
# The demo and test identity provider's one dependency: npm's `oidc-provider` (an OpenID
# Certified server), installed once into a cache folder outside the repository.
# Prints that folder (OIDC_PROVIDER_HOME for sandbox/idp/provider.mjs) as the last line.
set -euo pipefail
VERSION=9.5.2
HOME_DIR="${CLOUD_PORTAL_IDP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloud-portal/idp}"
mkdir -p "$HOME_DIR"
exec 9>"$HOME_DIR/.lock"
flock 9
installed=$(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$HOME_DIR/node_modules/oidc-provider/package.json" 2>/dev/null || true)
if [ "$installed" != "$VERSION" ]; then
  command -v npm >/dev/null || { echo "ensure-idp: npm (Node.js) is needed for the demo identity provider" >&2; exit 1; }
  echo "ensure-idp: installing oidc-provider $VERSION from the npm registry into $HOME_DIR" >&2
  [ -f "$HOME_DIR/package.json" ] || echo '{"name": "cloud-portal-idp", "private": true}' > "$HOME_DIR/package.json"
  if ! npm install --prefix "$HOME_DIR" --no-audit --no-fund --loglevel=error "oidc-provider@$VERSION" >&2; then
    echo "ensure-idp: npm could not install oidc-provider@$VERSION (is the npm registry reachable?)" >&2
    exit 1
  fi
fi
echo "$HOME_DIR"
