#!/bin/sh
# Container entry point (see Dockerfile).
#   web (default)  bring the database schema to head, apply tenants.yaml, then serve with gunicorn
#   worker [ARGS]  run the queue consumer (cloud-portal worker ARGS)
#   anything else  run it as a command, e.g. `cloud-portal users list` or `sh`
set -eu

require_secret_key() {
    # Check before `cloud-portal init`: init writes a random key into the instance config when
    # there is none, which would hide the missing setting and give every container its own key.
    if [ -z "${CLOUD_PORTAL_SECRET_KEY:-}" ]; then
        echo "error: CLOUD_PORTAL_SECRET_KEY is not set. The portal runs in production mode and needs" >&2
        echo "a random secret key of at least 32 characters, the same for the web and worker containers," >&2
        echo "for example: docker run -e CLOUD_PORTAL_SECRET_KEY=\"\$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')\" ..." >&2
        exit 64
    fi
}

case "${1:-web}" in
    web)
        require_secret_key
        cloud-portal init
        cloud-portal tenants sync
        # One gunicorn per container, so no control socket is needed.
        exec gunicorn -c python:cloud_portal.serving --bind "${HOST:-0.0.0.0}:${PORT:-8000}" --workers 2 --threads 4 \
            --worker-tmp-dir /dev/shm --access-logfile - --no-control-socket \
            "cloud_portal:create_app()"
        ;;
    worker)
        require_secret_key
        shift
        exec cloud-portal worker "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
