#!/usr/bin/env bash
# Runs a long, quiet command and says every 30 seconds that it is still at work, so a cold build
# is not minutes of silence:  bash scripts/progress.sh "building kube-apiserver" go build ...
set -uo pipefail
what=$1; shift
start=$SECONDS
"$@" &
child=$!
trap 'kill "$child" 2>/dev/null; wait "$child"; exit 130' INT TERM
while kill -0 "$child" 2>/dev/null; do
  for _ in $(seq 30); do
    sleep 1
    kill -0 "$child" 2>/dev/null || break 2
  done
  elapsed=$((SECONDS - start))
  printf '  ... still %s (%dm%02ds so far)\n' "$what" $((elapsed / 60)) $((elapsed % 60))
done
wait "$child"
status=$?
elapsed=$((SECONDS - start))
if ((status == 0)); then
  printf '  %s: done in %dm%02ds\n' "$what" $((elapsed / 60)) $((elapsed % 60))
fi
exit "$status"
