# Sourced by tests/cluster/build.sh and mk/kind/build-binaries.sh.
# kube_ldflags_for <version> [<build date>]: the linker flags of a Kubernetes binary built from
# the module proxy, stamping <version> (and the build date, if given) into component-base and
# client-go; without the stamps the binaries report v0.0.0-master.
kube_ldflags_for() {
  local version=$1 build_date=${2:-} minor pkg flags="-s -w"
  minor=${version#v1.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean"
    if [[ -n $build_date ]]; then
      flags+=" -X $pkg.buildDate=$build_date"
    fi
  done
  printf '%s\n' "$flags"
}
