#!/usr/bin/env bash
# Installs the Debian packages the tests and `handoff dev up` use, when they are missing:
# Redis and PostgreSQL servers, and Chromium for the console's browser tests. The tests' fixtures
# start their own private servers, on loopback, in temporary folders; nothing here uses the
# system-wide ones the packages may start.
#
#   bash scripts/services.sh                    # all of them (make test)
#   bash scripts/services.sh redis postgresql   # what `handoff dev up` needs (make demo)
#   bash scripts/services.sh --dry-run ...      # say what would be installed, install nothing
#
# PostgreSQL's server programs are looked for where `handoff dev up` looks: $HANDOFF_PG_BIN when
# set, else /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
set -euo pipefail
dry_run=""
if [[ ${1:-} == --dry-run ]]; then dry_run=1; shift; fi
wanted=("$@")
((${#wanted[@]})) || wanted=(redis postgresql chromium)
need=()
for part in "${wanted[@]}"; do
  case $part in
    redis)
      command -v redis-server >/dev/null || need+=(redis-server)
      command -v redis-cli >/dev/null || need+=(redis-tools) ;;
    postgresql)
      if [[ -n ${HANDOFF_PG_BIN:-} ]]; then
        [[ -x $HANDOFF_PG_BIN/postgres ]] || need+=(postgresql)
      else
        compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
      fi
      command -v psql >/dev/null || need+=(postgresql-client) ;;
    # The console's tests drive Debian's Chromium with Playwright (no browser download).
    chromium) command -v chromium >/dev/null || need+=(chromium) ;;
    *) echo "scripts/services.sh: unknown part '$part' (redis, postgresql or chromium)" >&2; exit 2 ;;
  esac
done
if ((${#need[@]} == 0)); then
  echo "services: ${wanted[*]} already installed"
  exit 0
fi
if [[ -n $dry_run ]]; then
  echo "would install: ${need[*]}"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "scripts/services.sh: missing ${need[*]}, and there is no apt-get here to install them:" \
    "install them with your system's package manager, then run this again" >&2
  exit 1
fi
echo "installing with apt: ${need[*]} (about a minute; asks for your sudo password when not root)"
sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
