# Sourced by the mk/kind scripts: the repository root, the pinned versions and the cache.
# (node-image.sh, standin-images.sh and rootfs.sh spell this out themselves: their own text is
# part of the cache key of what they build.)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$root/tests/cluster/versions.env"
source "$root/mk/kind/versions.env"
cache=${CLAIMOPS_CACHE:-$HOME/.cache/claimops}
