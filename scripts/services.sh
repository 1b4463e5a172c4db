#!/usr/bin/env bash
# Installs the Debian packages the tests and `handoff dev up` use, when they are missing:
# Redis and PostgreSQL servers, and Chromium for the console's browser tests. The tests' fixtures start their own private servers, on loopback,
# in temporary folders; nothing here uses the system-wide ones the packages may start.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
# The console's tests drive Debian's Chromium with Playwright (no browser download).
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
