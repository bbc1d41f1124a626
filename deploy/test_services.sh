#!/usr/bin/env bash
# The services `make test` uses on this machine: PostgreSQL (127.0.0.1:5432, trust auth, database
# `test`) and Redis (127.0.0.1:6379). Started when installed but stopped; when missing, says what to
# install and fails, rather than letting a hundred tests fail one by one.
set -u
missing=()

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; then
    echo "starting PostgreSQL ..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break; sleep 1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || missing+=("PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres and a database 'test' (Debian: apt-get install postgresql)")
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis ..."
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || missing+=("Redis on 127.0.0.1:6379 (Debian: apt-get install redis-server)")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "make test needs, and this machine lacks:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
