#!/usr/bin/env bash
# What `make up` needs from the machine: a Docker engine that answers, plus debootstrap and zstd
# for the images built here when no registry answers. Installs Debian's docker.io, debootstrap
# and zstd when missing (root on Debian only), starts dockerd when no engine answers, and
# registers the OCI runtime wrapper only on machines whose capability bounding set lacks
# CAP_SYS_RESOURCE (there every --privileged container, so every kind node, fails without it).
# Anything it cannot provide is named, and it exits non-zero at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CLAIMOPS_CACHE:-$HOME/.cache/claimops}
log=$cache/dockerd.log

can_install() { [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; }

wanted=()
command -v dockerd >/dev/null 2>&1 || docker info >/dev/null 2>&1 || wanted+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || wanted+=(debootstrap)
command -v zstd >/dev/null 2>&1 || wanted+=(zstd)
if ((${#wanted[@]})); then
  if ! can_install; then
    echo "prerequisites: missing ${wanted[*]}, and this is not root on Debian, so I cannot install" >&2
    echo "  them: install Docker (https://docs.docker.com/engine/install/), debootstrap and zstd." >&2
    exit 1
  fi
  echo "prerequisites: installing Debian's ${wanted[*]} ..."
  start=$SECONDS
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >/dev/null
  echo "prerequisites: installed in $((SECONDS - start)) s"
fi

# kind's nodes are privileged; runc refuses them where CAP_SYS_RESOURCE is outside the
# bounding set. The wrapper is (re)installed on every call: a dockerd that was started with
# it keeps its path, and a cleared cache would otherwise fail every container it starts.
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
needs_wrapper=false
if (( (0x$capbnd >> 24 & 1) == 0 )); then
  needs_wrapper=true
  mkdir -p "$cache/bin"
  install -m 0755 "$here/oci-runtime-wrapper" "$cache/bin/claimops-runc"
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [[ -n ${DOCKER_HOST:-} ]]; then
  echo "prerequisites: DOCKER_HOST=$DOCKER_HOST does not answer (docker info failed)" >&2
  exit 1
fi

if [[ $(id -u) != 0 ]]; then
  echo "prerequisites: dockerd is installed but no engine answers; start it (as root:" >&2
  echo "  systemctl start docker) or add yourself to the docker group." >&2
  exit 1
fi

# A systemd host starts it the usual way.
if [[ -d /run/systemd/system ]] && systemctl start docker 2>/dev/null; then
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
fi

args=()
if [[ $needs_wrapper == true ]]; then
  echo "prerequisites: CAP_SYS_RESOURCE is outside this machine's bounding set;" \
    "using the OCI runtime wrapper mk/kind/oci-runtime-wrapper"
  args+=(--add-runtime "claimops-runc=$cache/bin/claimops-runc" --default-runtime claimops-runc)
fi
mkdir -p "$cache"
echo "prerequisites: starting dockerd (log: $log)"
# setsid: the engine outlives this make and the CI step that started it.
setsid dockerd "${args[@]}" >"$log" 2>&1 < /dev/null &
for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then
    echo "prerequisites: ready"
    exit 0
  fi
  sleep 1
done
echo "prerequisites: dockerd did not answer within 60 s; its log ($log) ends with:" >&2
tail -20 "$log" >&2
exit 1
