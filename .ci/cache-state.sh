#!/usr/bin/env bash
# What .ci/run found cached when it started, for the head of its timing table: "cold" when
# none of the expensive builds was cached, "warm" when all were, "partial" between; then the
# parts, each present or absent.
# Usage: .ci/cache-state.sh <claimops cache dir>
set -uo pipefail
cache=$1
parts=() present=0
check() { # check <name> <command...>: the command succeeds when that part is cached
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then parts+=("$name: yes"); present=$((present + 1)); else parts+=("$name: no"); fi
}
check "binaries" compgen -G "$cache/bin/kube-*/kube-apiserver"
check "node image" compgen -G "$cache/images/kind-node-*.tar.zst"
check "Go build cache" test -n "$(ls -A "$(go env GOCACHE 2>/dev/null)" 2>/dev/null)"
check "Python wheels" test -d "$cache/uv"
check "our images" bash -c 'docker image ls --format "{{.Repository}}" | grep -q "^claimops/"'
state=partial
((present == 0)) && state=cold
((present == ${#parts[@]})) && state=warm
(IFS=,; echo "$state (${parts[*]})")
