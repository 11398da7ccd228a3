#!/usr/bin/env bash
# rootfs.sh DIR PACKAGES: a minimal Debian root file system (debootstrap --variant=minbase)
# with the given comma-separated packages, from the machine's own Debian mirror. Used for the
# images that are built locally where no container registry answers (mk/kind/images.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
dir=$1 packages=$2
cache=${CLAIMOPS_CACHE:-$HOME/.cache/claimops}
if ! command -v debootstrap >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  else
    echo "rootfs: debootstrap is missing (apt-get install debootstrap, as root)" >&2
    exit 1
  fi
fi
# The mirror the host's apt uses (deb822 or one-line sources), else Debian's default.
mirror=$(grep -hoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | head -1 || true)
[[ -n $mirror ]] || mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$cache/debootstrap" "$cache/rootfs"
rm -rf "$dir"
# A finished root file system is kept (zstd tar) by suite, packages and this recipe: recipes of
# the images built on top of it change more often than it does.
key=$(printf '%s\n' "$DEBIAN_SUITE" "$packages" "$(cat "$0")" | sha256sum | cut -c1-16)
saved=$cache/rootfs/$DEBIAN_SUITE-$key.tar.zst
if [[ -f $saved ]]; then
  mkdir -p "$dir"
  zstd -dc "$saved" | tar -C "$dir" -x
  exit 0
fi
debootstrap --variant=minbase --cache-dir="$cache/debootstrap" --include="$packages" \
  "$DEBIAN_SUITE" "$dir" "$mirror" >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
rm -f "$dir.log"
# No apt lists or caches in images.
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" -c . | zstd -q -3 -T0 -o "$saved.tmp" && mv "$saved.tmp" "$saved"
