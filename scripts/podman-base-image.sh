#!/usr/bin/env bash
# Get a Debian host without a Docker engine or a reachable container registry ready to build
# and run our Dockerfile with podman:
#   - installs podman, runc and debootstrap with apt if any is missing (needs root);
#   - writes the containers.conf podman needs on these hosts to a cache folder;
#   - makes the local base image (Debian + python3, venv, pip, CA certificates, and Pango,
#     HarfBuzz's subsetter and a font for the PDF statements) with
#     debootstrap from the mirror in this machine's apt sources, unless it exists already.
# Safe to run again and again: each step is skipped when its result is already there.
#
# stdout: KEY=value lines (shell-quoted) for the callers; progress goes to stderr.
#   eval "$(scripts/podman-base-image.sh)"
#   CONTAINERS_CONF=$CONTAINERS_CONF podman --runtime "$PODMAN_RUNTIME" build $PODMAN_BUILD_FLAGS \
#       --build-arg BASE="$BASE_IMAGE" -t cloud-portal .
#
# Settings (environment): BASE_IMAGE (default localhost/cloud-portal-base:<codename>),
# DEBIAN_SUITE (default: this host's codename), DEBIAN_MIRROR (default: from the apt sources),
# CLOUD_PORTAL_PODMAN_DIR (default: ${XDG_CACHE_HOME:-$HOME/.cache}/cloud-portal/podman).
set -euo pipefail

log() { printf '%s\n' "podman-base-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck disable=SC1091
SUITE="${DEBIAN_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}"
[ -n "$SUITE" ] || die "cannot tell the Debian codename from /etc/os-release; set DEBIAN_SUITE"
# The tag names the package set, so a base cached before a package was added is not reused.
BASE_IMAGE="${BASE_IMAGE:-localhost/cloud-portal-base:$SUITE-pango}"
STATE_DIR="${CLOUD_PORTAL_PODMAN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloud-portal/podman}"
CONF="$STATE_DIR/containers.conf"
RUNTIME=/usr/sbin/runc
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

mkdir -p "$STATE_DIR"
# One run at a time (parallel test sessions would otherwise debootstrap twice).
exec 9>"$STATE_DIR/.lock"
flock 9

# 1. Tools.
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
[ -x "$RUNTIME" ] || missing+=(runc)
[ -x /usr/sbin/debootstrap ] || command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; run as root or: apt-get install podman runc debootstrap"
    log "installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends podman runc debootstrap >&2
fi

# 2. containers.conf: without an empty default_ulimits the runtime fails with "setrlimit
# RLIMIT_NOFILE: Operation not permitted"; the systemd cgroup manager is not available here
# (and crun refuses hybrid cgroups, hence runc).
cat >"$CONF.tmp" <<'EOF'
# Written by scripts/podman-base-image.sh; use with CONTAINERS_CONF=<this file>
# and podman --runtime /usr/sbin/runc.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
EOF
mv "$CONF.tmp" "$CONF"
export CONTAINERS_CONF="$CONF"

# 3. The base image.
find_mirror() {
    # The first enabled "deb" source carrying $SUITE, from deb822 *.sources files or one-line lists.
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ")) {
                    n = split(uris, u, " ")
                    for (i = 1; i <= n; i++) if (u[i] ~ /^https?:\/\//) { print u[i]; exit }
                }
                types = ""; uris = ""; suites = ""; enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"   { $1 = ""; types = $0 }
            tolower($1) == "uris:"    { $1 = ""; uris = $0 }
            tolower($1) == "suites:"  { $1 = ""; suites = $0 }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
            awk -v suite="$SUITE" '$1 == "deb" && $3 == suite && $2 ~ /^https?:\/\// { print $2 }'
    done
}

if podman --runtime "$RUNTIME" image exists "$BASE_IMAGE"; then
    log "$BASE_IMAGE exists"
else
    [ "$(id -u)" -eq 0 ] || die "building $BASE_IMAGE with debootstrap needs root"
    MIRROR="${DEBIAN_MIRROR:-$(find_mirror | head -n 1)}"
    [ -n "$MIRROR" ] || die "no http(s) 'deb' source for $SUITE in /etc/apt/sources.list{,.d/}; set DEBIAN_MIRROR"
    ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/cloud-portal-rootfs.XXXXXX")"
    trap 'rm -rf "$ROOTFS"' EXIT
    log "debootstrap $SUITE from $MIRROR (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,libpango-1.0-0,libpangoft2-1.0-0,libharfbuzz-subset0,fonts-dejavu-core \
        "$SUITE" "$ROOTFS" "$MIRROR" >&2
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    log "importing the root file system as $BASE_IMAGE"
    tar -C "$ROOTFS" -c . | podman --runtime "$RUNTIME" import \
        --change 'ENV=LANG=C.UTF-8' --change 'CMD=["/bin/bash"]' - "$BASE_IMAGE" >&2
    rm -rf "$ROOTFS"
    trap - EXIT
fi

# 4. What the callers need.
printf 'CONTAINERS_CONF=%q\n' "$CONF"
printf 'PODMAN_RUNTIME=%q\n' "$RUNTIME"
printf 'BASE_IMAGE=%q\n' "$BASE_IMAGE"
printf 'PODMAN_BUILD_FLAGS=%q\n' "--network=host --format=docker -v $CA_BUNDLE:$CA_BUNDLE:ro"
printf 'PODMAN_RUN_FLAGS=%q\n' "--network=host"
