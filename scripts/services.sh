#!/usr/bin/env bash
# Installs the Debian packages the tests and `handoff dev up` use, when they are missing.
# The tests' fixtures start the servers themselves, on loopback, in temporary folders.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts a system-wide redis on 6379; nothing here uses it.
