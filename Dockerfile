# Production image of the Cwmwl Cymru portal: gunicorn serving the app as the non-root user
# "portal", with the instance folder (SQLite database, queue, portal.cfg) in /var/lib/cloud-portal.
#
#   docker build -t cloud-portal .
#   docker run -d -p 8000:8000 -e CLOUD_PORTAL_SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" \
#       -v cloud-portal-data:/var/lib/cloud-portal -v ./tenants.yaml:/app/tenants.yaml:ro cloud-portal
#   docker run -d ...same env and volumes... cloud-portal worker     # the queue consumer
#   docker run --rm -it ...same env and volumes... cloud-portal cloud-portal users list
#
# Environment: CLOUD_PORTAL_SECRET_KEY (required), other CLOUD_PORTAL_* settings, HOST and PORT
# (listen address, default 0.0.0.0:8000), GUNICORN_CMD_ARGS (extra gunicorn options).
# The base is a build argument so hosts without registry access can supply their own Debian
# image with python3, venv and pip (see scripts/podman-base-image.sh).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# WeasyPrint (PDF statements) needs Pango, HarfBuzz's subsetter (same PDF bytes every time) and a
# font; the local base of scripts/podman-base-image.sh has them already, so nothing is fetched there.
RUN if ! ldconfig -p | grep -q libpangoft2-1.0 || ! ldconfig -p | grep -q libharfbuzz-subset \
        || ! ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf >/dev/null 2>&1; then \
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN groupadd --system portal \
 && useradd --system --gid portal --home-dir /var/lib/cloud-portal --no-create-home \
        --shell /usr/sbin/nologin portal \
 && install -d -o portal -g portal -m 0750 /var/lib/cloud-portal \
 && python3 -m venv /opt/venv

# Dependencies first: this layer is rebuilt only when setup.cfg changes, not on every code edit.
COPY setup.cfg /tmp/build/setup.cfg
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('/tmp/build/setup.cfg'); \
reqs = [r.strip() for r in c['options']['install_requires'].splitlines()]; \
print('\n'.join(r for r in reqs if r and not r.startswith('#')))" > /tmp/build/requirements.txt \
 && pip install --no-cache-dir 'setuptools>=68' wheel \
 && pip install --no-cache-dir -r /tmp/build/requirements.txt \
 && rm -rf /tmp/build

# The code. Installed editable so the package and the top-level templates/ stay side by side
# (the app finds its templates as <package dir>/../templates).
COPY . /app
WORKDIR /app
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /app \
 && if ls cloud_portal/translations/*/LC_MESSAGES/*.po >/dev/null 2>&1; then \
        pybabel compile -d cloud_portal/translations; fi \
 && python -m compileall -q cloud_portal \
 && chmod 0755 /app/docker-entrypoint.sh

ENV PYTHONDONTWRITEBYTECODE=1 \
    CLOUD_PORTAL_ENV=production \
    CLOUD_PORTAL_INSTANCE_PATH=/var/lib/cloud-portal \
    CLOUD_PORTAL_TENANTS_FILE=/app/tenants.yaml \
    HOME=/var/lib/cloud-portal \
    PORT=8000

USER portal
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/app/docker-entrypoint.sh"]
CMD ["web"]
