#!/usr/bin/env bash
# Make a Redis server answer on 127.0.0.1:6379 (the one running, or Debian's package started here,
# keeping nothing on disk). Prints its URL on the last line.
set -euo pipefail
PORT=${REDIS_PORT:-6379}
if ! redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "Redis is not installed: installing Debian's redis-server package" >&2
    [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock || true)" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  fi
  echo "starting Redis on 127.0.0.1:$PORT" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
    --dir /tmp --logfile /tmp/cloud-portal-redis.log
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null || { echo "Redis did not start; see /tmp/cloud-portal-redis.log" >&2; exit 1; }
fi
echo "redis://127.0.0.1:$PORT/0"
