# Sourced by tests/cluster/build.sh and mk/kind/build-binaries.sh: one way to build Go binaries
# into ~/.cache/claimops/bin/, shared by the cluster test layer and the kind node image.
# - go_build_lock: one Go build on this machine at a time (flock). `make setup` and
#   `make images` run side by side in CI; two builds of k8s.io/kubernetes racing on two cores
#   compile the same packages twice. Serialised, the second finds them in Go's build cache.
# - go_build_into <dir> <module dir> <ldflags> <package>...: every package missing from <dir>
#   in one `go build` (shared packages compile once, links run side by side), then moved in.
# - kube_ldflags: the linker flags of every Kubernetes binary (one recipe for all seven).
# Expects $cache and $KUBERNETES_VERSION to be set.

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Two compile jobs on two cores; each link can take ~2 GiB, well inside the machine.
export GOMAXPROCS=${GOMAXPROCS:-2}

go_build_lock() {
  # Held until the calling script exits; a nested call (build.sh from a script that holds it)
  # must not wait for itself.
  if [[ -n ${CLAIMOPS_GO_BUILD_LOCK_HELD:-} ]]; then return; fi
  mkdir -p "$cache/bin"
  exec {go_build_lock_fd}>"$cache/bin/.go-build.lock"
  if ! flock -n "$go_build_lock_fd"; then
    echo "waiting for another Go build to finish (lock: $cache/bin/.go-build.lock) ..."
    local start=$SECONDS
    flock "$go_build_lock_fd"
    echo "waited $((SECONDS - start)) s for the Go build lock"
  fi
  export CLAIMOPS_GO_BUILD_LOCK_HELD=1
}

go_build_into() { # go_build_into <dir> <module dir> <ldflags> <package>...
  local dir=$1 mod=$2 ldflags=$3; shift 3
  local pkg wanted=() names=()
  for pkg in "$@"; do
    if [[ -x $dir/${pkg##*/} ]]; then
      echo "cached: $dir/${pkg##*/}"
    else
      wanted+=("$pkg") names+=("${pkg##*/}")
    fi
  done
  ((${#wanted[@]})) || return 0
  mkdir -p "$dir"
  local tmp start=$SECONDS
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  echo "building ${names[*]} ..."
  if ! (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${wanted[@]}"); then
    rm -rf "$tmp"
    return 1
  fi
  for pkg in "${names[@]}"; do mv "$tmp/$pkg" "$dir/$pkg"; done
  rm -rf "$tmp"
  echo "built ${names[*]} in $((SECONDS - start)) s"
}

# Stamps the version into component-base and client-go (without them the binaries report
# v0.0.0-master and kubeadm asks for the wrong image tags). The build date is fixed so that a
# rebuild is byte-for-byte the same binary.
kube_ldflags() {
  local version=$KUBERNETES_VERSION minor pkg flags="-s -w"
  minor=${version#v1.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s\n' "$flags"
}
