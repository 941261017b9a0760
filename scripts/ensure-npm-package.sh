#!/usr/bin/env bash
# One npm package at one version, installed once into a cache folder outside the repository
# (for the test and demo tools that come from the npm registry). Prints that folder.
# Usage: ensure-npm-package.sh PACKAGE VERSION FOLDER
set -euo pipefail
PACKAGE=$1
VERSION=$2
HOME_DIR=$3
mkdir -p "$HOME_DIR"
exec 9>"$HOME_DIR/.lock"
flock 9
installed=$(sed -n 's/^  "version": "\([^"]*\)",\{0,1\}$/\1/p' "$HOME_DIR/node_modules/$PACKAGE/package.json" 2>/dev/null | head -1 || true)
if [ "$installed" != "$VERSION" ]; then
  command -v npm >/dev/null || { echo "ensure-npm-package: npm (Node.js) is needed for $PACKAGE" >&2; exit 1; }
  echo "ensure-npm-package: installing $PACKAGE $VERSION from the npm registry into $HOME_DIR" >&2
  [ -f "$HOME_DIR/package.json" ] || echo "{\"name\": \"cloud-portal-$PACKAGE\", \"private\": true}" > "$HOME_DIR/package.json"
  if ! npm install --prefix "$HOME_DIR" --no-audit --no-fund --loglevel=error "$PACKAGE@$VERSION" >&2; then
    echo "ensure-npm-package: npm could not install $PACKAGE@$VERSION (is the npm registry reachable?)" >&2
    exit 1
  fi
fi
echo "$HOME_DIR"
