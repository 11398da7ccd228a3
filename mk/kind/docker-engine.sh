#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when no docker client or
# engine is there (root on Debian only), starts dockerd when none answers, and registers the
# OCI runtime wrapper only on machines whose capability bounding set lacks CAP_SYS_RESOURCE
# (there every --privileged container, so every kind node, fails without it).
# Anything it cannot provide is named, and it exits non-zero at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CLAIMOPS_CACHE:-$HOME/.cache/claimops}
log=$cache/dockerd.log

if docker info >/dev/null 2>&1; then
  exit 0
fi

can_install() { [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null 2>&1; then
  if command -v docker >/dev/null 2>&1 && [[ -n ${DOCKER_HOST:-} ]]; then
    echo "docker-engine: DOCKER_HOST=$DOCKER_HOST does not answer (docker info failed)" >&2
    exit 1
  fi
  if ! can_install; then
    echo "docker-engine: no Docker engine answers and this is not root on Debian, so I cannot" >&2
    echo "  install one: install Docker (https://docs.docker.com/engine/install/) and start it." >&2
    exit 1
  fi
  echo "docker-engine: installing Debian's docker.io ..."
  start=$SECONDS
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  echo "docker-engine: installed in $((SECONDS - start)) s"
fi

if [[ $(id -u) != 0 ]]; then
  echo "docker-engine: dockerd is installed but no engine answers; start it (as root:" >&2
  echo "  systemctl start docker) or add yourself to the docker group." >&2
  exit 1
fi

# A systemd host starts it the usual way.
if [[ -d /run/systemd/system ]] && systemctl start docker 2>/dev/null; then
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
fi

args=()
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (( (0x$capbnd >> 24 & 1) == 0 )); then
  # kind's nodes are privileged; runc refuses them where the bit is missing.
  echo "docker-engine: CAP_SYS_RESOURCE is outside this machine's bounding set;" \
    "using the OCI runtime wrapper mk/kind/oci-runtime-wrapper"
  mkdir -p "$cache/bin"
  install -m 0755 "$here/oci-runtime-wrapper" "$cache/bin/claimops-runc"
  args+=(--add-runtime "claimops-runc=$cache/bin/claimops-runc" --default-runtime claimops-runc)
fi
mkdir -p "$cache"
echo "docker-engine: starting dockerd (log: $log)"
# setsid: the engine outlives this make and the CI step that started it.
setsid dockerd "${args[@]}" >"$log" 2>&1 < /dev/null &
for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker-engine: ready"
    exit 0
  fi
  sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; its log ($log) ends with:" >&2
tail -20 "$log" >&2
exit 1
