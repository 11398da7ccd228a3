#!/usr/bin/env bash
# `make images`: our three images from our Dockerfiles, unchanged but for the base-image build
# argument. Where no container registry answers (one quick probe; CLAIMOPS_OFFLINE=1|0
# decides instead), the images that would be pulled are built here first: the kind node
# image and stand-ins for python:3.11-slim, PostgreSQL and MinIO (mk/kind/node-image.sh,
# mk/kind/standin-images.sh). Progress goes to stderr; stdout is shell assignments for
# mk/kind/up.sh: tag, stage_image, operator_image, ui_image, offline, node_image, python_image,
# postgres_image, minio_image, extra_images (to kind load), chart_images (helm --set flags).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
bash "$here/prerequisites.sh" >&2
offline=${CLAIMOPS_OFFLINE:-auto}
if [[ $offline == auto ]]; then
  # Any HTTP answer (401 included) means the registry is reachable.
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 https://registry-1.docker.io/v2/ || true)
  if [[ $code == 000 ]]; then offline=1; else offline=0; fi
fi
build_args=() node_image="" python_image="" postgres_image="" minio_image="" extra_images="" chart_images=""
if [[ $offline == 1 ]]; then
  echo "      no container registry answers: building every image that would be pulled (cached)" >&2
  node_image=$(bash "$here/node-image.sh")
  eval "$(bash "$here/standin-images.sh" | sed 's/^\([a-z]*\)=/\1_image=/')"
  build_args=(--build-arg "PYTHON_IMAGE=$python_image")
  extra_images="$postgres_image $minio_image"
  chart_images="--set postgresql.image.repository=${postgres_image%:*} --set postgresql.image.tag=${postgres_image##*:}"
  chart_images+=" --set minio.image.repository=${minio_image%:*} --set minio.image.tag=${minio_image##*:}"
fi
tag=$(bash "$here/image-tag.sh")
stage_image=claimops/stages:$tag operator_image=claimops/operator:$tag ui_image=claimops/ui:$tag
for spec in "stage-images/Dockerfile=$stage_image" "operator/Dockerfile=$operator_image" "frontend/Dockerfile=$ui_image"; do
  dockerfile=${spec%%=*} image=${spec#*=}
  if docker image inspect "$image" >/dev/null 2>&1; then echo "      cached: $image" >&2; continue; fi
  start=$SECONDS
  # The legacy builder: Debian's docker.io has no buildx, and the Dockerfiles need nothing newer.
  if ! DOCKER_BUILDKIT=0 docker build "${build_args[@]}" --build-arg "VERSION=$tag" -f "$dockerfile" -t "$image" . \
      >"$root/.build-${image//[:\/]/-}.log" 2>&1; then
    tail -30 "$root/.build-${image//[:\/]/-}.log" >&2
    echo "make images: docker build of $dockerfile failed (log: .build-${image//[:\/]/-}.log)" >&2
    exit 1
  fi
  rm -f "$root/.build-${image//[:\/]/-}.log"
  echo "      built $image in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=si))" >&2
done
for name in tag stage_image operator_image ui_image offline node_image python_image postgres_image minio_image \
    extra_images chart_images; do
  printf '%s=%q\n' "$name" "${!name}"
done
