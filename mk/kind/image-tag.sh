#!/usr/bin/env bash
# The tag of our three images: the version plus a hash of what goes into them (the build
# context .dockerignore admits, and the Dockerfiles), so a changed source is a new tag that
# `helm upgrade` rolls out, and an unchanged one is reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
hash=$(find pyproject.toml constraints.txt README.md stage-images/Dockerfile operator/Dockerfile frontend/Dockerfile \
  operator/claimops_operator stage-images/claimops_stages frontend/claimops_ui \
  -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-10)
echo "$version-$hash"
