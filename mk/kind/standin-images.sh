#!/usr/bin/env bash
# Where no container registry answers, builds local stand-ins for the third-party images the
# Dockerfiles and the chart pull, each honouring the contract the chart relies on:
#   python   for python:3.11-slim (the Dockerfiles' PYTHON_IMAGE): Debian's Python 3.11 with
#            venv and pip at /usr/bin/python, the host's CA bundle so pip reaches PyPI;
#   postgres for postgres:16 (postgresql-deployment.yaml): POSTGRES_USER/_PASSWORD/_DB,
#            PGDATA, port 5432, pg_isready on PATH, uid 999, read-only root file system;
#            Debian bookworm serves PostgreSQL 15, so that is the server version;
#   minio    for minio/minio (minio-deployment.yaml): `minio server /data ...` as uid 1000,
#            MINIO_ROOT_USER/_PASSWORD, built from the Go module proxy.
# Prints NAME=IMAGE lines (python, postgres, minio). Cached: the docker images, and
# `docker save | zstd` under ~/.cache/claimops/images/, keyed by a hash of the recipe.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tests/cluster/versions.env"
source "$here/versions.env"
cache=${CLAIMOPS_CACHE:-$HOME/.cache/claimops}
recipe=$(cat "$0" "$here/rootfs.sh" "$here/versions.env" "$root/tests/cluster/versions.env" | sha256sum | cut -c1-12)
log() { echo "standin-images: $*" >&2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/claimops-standin.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ensure <image> <build function>: docker image, else the cached archive, else build + save.
ensure() {
  local image=$1 build=$2 archive
  archive=$cache/images/$(echo "${image#*/}" | tr ':/' '--').tar.zst
  if docker image inspect "$image" >/dev/null 2>&1; then log "cached: $image"; return; fi
  if [[ -f $archive ]]; then zstd -dc "$archive" | docker load >/dev/null; log "loaded $image"; return; fi
  local start=$SECONDS
  "$build" "$image"
  mkdir -p "$cache/images"
  docker save "$image" | zstd -q -3 -T0 -o "$archive.tmp" && mv "$archive.tmp" "$archive"
  log "built $image in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
}

build_python() {
  local rfs=$work/python
  bash "$here/rootfs.sh" "$rfs" python3.11,python3-venv,python3-pip,python-is-python3,ca-certificates,libgomp1,passwd
  # The host's bundle: on machines whose HTTPS goes through an inspecting proxy it holds that
  # proxy's CA, without which pip cannot reach PyPI from a build container.
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$rfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$1" >/dev/null
}

build_postgres() {
  local rfs=$work/postgres
  bash "$here/rootfs.sh" "$rfs" postgresql-15,passwd
  # The official image's uid and gid.
  chroot "$rfs" sh -euc 'groupmod -g 999 postgres && usermod -u 999 -g 999 postgres
    rm -rf /var/lib/postgresql/15 /etc/postgresql/15'
  cat >"$rfs/usr/local/bin/docker-entrypoint.sh" <<'SH'
#!/bin/sh
# First start: initdb with POSTGRES_USER/POSTGRES_PASSWORD, create POSTGRES_DB, accept
# password logins from the pod network. Then (and on every later start) run the server.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}" "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "POSTGRES_PASSWORD must be set" >&2; exit 1
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  pwfile=$(mktemp); printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256
  rm -f "$pwfile"
  if [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
fi
exec postgres -D "$PGDATA" "$@"
SH
  chmod 0755 "$rfs/usr/local/bin/docker-entrypoint.sh"
  tar -C "$rfs" -c . | docker import \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PGDATA=/var/lib/postgresql/data' \
    --change 'USER 999:999' --change 'EXPOSE 5432' \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' - "$1" >/dev/null
}

build_minio() {
  local rfs=$work/minio minio=$cache/bin/minio-$MINIO_VERSION/minio
  [[ -x $minio ]] || bash "$root/tests/cluster/build.sh" >&2
  mkdir -p "$rfs/usr/bin" "$rfs/etc/ssl/certs" "$rfs/tmp" "$rfs/data"
  install -m 0755 "$minio" "$rfs/usr/bin/minio"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rfs/etc/ssl/certs/"
  printf 'root:x:0:0::/root:/sbin/nologin\nminio:x:1000:1000::/tmp:/sbin/nologin\n' >"$rfs/etc/passwd"
  printf 'root:x:0:\nminio:x:1000:\n' >"$rfs/etc/group"
  chmod 1777 "$rfs/tmp"
  tar -C "$rfs" -c . | docker import --change 'USER 1000:1000' --change 'ENV HOME=/tmp' \
    --change 'EXPOSE 9000 9001' --change 'ENTRYPOINT ["/usr/bin/minio"]' - "$1" >/dev/null
}

python=claimops.local/python:3.11-$DEBIAN_SUITE-$recipe
postgres=claimops.local/postgres:15-$DEBIAN_SUITE-$recipe
minio=claimops.local/minio:${MINIO_VERSION##*-}-$recipe
ensure "$python" build_python
ensure "$postgres" build_postgres
ensure "$minio" build_minio
echo "python=$python"
echo "postgres=$postgres"
echo "minio=$minio"
