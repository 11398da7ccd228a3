#!/usr/bin/env bash
# Builds the kind node image locally, for machines where no container registry answers
# (`kind build node-image` pulls pause, etcd, CoreDNS and the CNI/storage images even with
# --type file). Everything comes from Debian's mirror, the Go module proxy
# (mk/kind/build-binaries.sh) and the kind module of the pinned version (its node-base files and
# default storage manifest). Prints the image name on its last line.
# Cached: the docker image, and `docker save | zstd` under ~/.cache/claimops/images/, keyed by
# the Kubernetes and kind versions and a hash of this recipe.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tests/cluster/versions.env"
source "$here/versions.env"
cache=${CLAIMOPS_CACHE:-$HOME/.cache/claimops}
bin=$cache/bin
kube=$bin/kube-$KUBERNETES_VERSION

# This VM refuses a negative oom_score_adj (no CAP_SYS_RESOURCE): there containerd must
# clamp it, as kind does for rootless nodes. Part of the cache key.
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
restrict_oom=false
(( (0x$capbnd >> 24 & 1) == 1 )) || restrict_oom=true

recipe=$(cat "$0" "$here/rootfs.sh" "$here/kind_manifests.py" "$here/versions.env" "$root/tests/cluster/versions.env" \
  | sha256sum | cut -c1-12)
tag=$KUBERNETES_VERSION-kind$KIND_VERSION-$recipe$([[ $restrict_oom == true ]] && echo -oomr || true)
image=claimops.local/kind-node:$tag
archive=$cache/images/kind-node-$tag.tar.zst
log() { echo "node-image: $*" >&2; }

if docker image inspect "$image" >/dev/null 2>&1; then
  log "cached: $image"; echo "$image"; exit 0
fi
if [[ -f $archive ]]; then
  start=$SECONDS
  zstd -dc "$archive" | docker load >/dev/null
  log "loaded $image from $archive in $((SECONDS - start)) s"; echo "$image"; exit 0
fi

start_all=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/claimops-node.XXXXXX")
# The Go builds (CPU) run while debootstrap below waits on the Debian mirror and the disk; they
# may first wait for `make setup`'s own Go build (one at a time, tests/cluster/go-build.sh).
bash "$here/build-binaries.sh" >"$work/binaries.log" 2>&1 &
binaries_pid=$!
trap 'kill "$binaries_pid" 2>/dev/null || true; docker rm -f claimops-node-build >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
kind_mod=$(cd "$root/tests/cluster/kube" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')

# 1. The node's base: Debian with systemd, containerd, runc, CNI plugins and kind's files.
log "debootstrap of the node base ..."
start=$SECONDS
rfs=$work/node
bash "$here/rootfs.sh" "$rfs" systemd,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins,socat
# The base of the kube-proxy and local-path helper images (step 2), while the Go builds run.
tools=$work/tools
bash "$here/rootfs.sh" "$tools" iptables,nftables,conntrack,kmod,ipset
waited=$SECONDS
if ! wait "$binaries_pid"; then
  cat "$work/binaries.log" >&2
  log "building the node's binaries failed (mk/kind/build-binaries.sh)"
  exit 1
fi
grep -v '^go: downloading' "$work/binaries.log" | sed 's/^/node-image: /' >&2 || true
log "waited $((SECONDS - waited)) s for the node's binaries after the Debian packages"
files=$kind_mod/images/base/files
install -m 0755 "$files"/usr/local/bin/* "$rfs/usr/local/bin/"
mkdir -p "$rfs/kind/bin" "$rfs/kind/manifests" "$rfs/etc/containerd" "$rfs/etc/kubernetes/manifests" \
  "$rfs/etc/systemd/system/kubelet.service.d" "$rfs/opt/cni/bin" "$rfs/etc/cni/net.d"
install -m 0644 "$files"/kind/README.txt "$rfs/kind/"
install -m 0755 "$files"/kind/bin/* "$rfs/kind/bin/"
install -m 0644 "$files"/etc/crictl.yaml "$rfs/etc/"
install -m 0644 "$files"/etc/containerd/config.toml "$rfs/etc/containerd/"
install -m 0644 "$files"/etc/default/kubelet "$rfs/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$rfs/etc/sysctl.d/"
install -m 0644 "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice "$rfs/etc/systemd/system/"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$rfs/etc/systemd/system/kubelet.service.d/"
if [[ $restrict_oom == true ]]; then
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$rfs/etc/containerd/config.toml"
fi
# kind's units expect containerd and runc under /usr/local; Debian ships them in /usr.
ln -sf /usr/bin/containerd "$rfs/usr/local/bin/containerd"
ln -sf /usr/bin/ctr "$rfs/usr/local/bin/ctr"
ln -sf /usr/sbin/runc "$rfs/usr/local/sbin/runc"
for plugin in "$rfs"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "$plugin")" "$rfs/opt/cni/bin/"; done
install -m 0755 "$bin/crictl-$CRICTL_VERSION/crictl" "$rfs/usr/local/bin/"
for cmd in kubeadm kubelet kubectl; do install -m 0755 "$kube/$cmd" "$rfs/usr/bin/"; done
echo "$KUBERNETES_VERSION" >"$rfs/kind/version"
chroot "$rfs" /bin/sh -euc '
  ctr oci spec \
    | jq ".hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" \
    | jq "del(.process.rlimits)" > /etc/containerd/cri-base.json
  find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
  rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
    /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
    /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
  echo ReadKMsg=no >> /etc/systemd/journald.conf
  ln -sf "$(command -v systemd || echo /lib/systemd/systemd)" /sbin/init
  systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  systemctl mask systemd-binfmt.service >/dev/null 2>&1
'
# kindnetd (kind's CNI) is a nested module no proxy serves. A single node needs no routes
# between nodes, so a static bridge on the node's pod CIDR (kind's default podSubnet
# 10.244.0.0/16, first /24 for the first node) does the job; kind still applies a default CNI
# manifest, so it gets a harmless one.
cat >"$rfs/etc/cni/net.d/10-claimops-bridge.conflist" <<'JSON'
{
  "cniVersion": "0.4.0",
  "name": "claimops-bridge",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
cat >"$rfs/kind/manifests/default-cni.yaml" <<'YAML'
# The node image's CNI is a static bridge config (/etc/cni/net.d); nothing to deploy.
apiVersion: v1
kind: ConfigMap
metadata:
  name: claimops-static-cni
  namespace: kube-system
data:
  cni: /etc/cni/net.d/10-claimops-bridge.conflist
YAML
python3 "$here/kind_manifests.py" "$kind_mod" defaultStorageManifest >"$rfs/kind/manifests/default-storage.yaml"
tar -C "$rfs" -c . | docker import --change 'ENV container=docker' \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - claimops.local/kind-node-base:$tag-import >/dev/null
# docker import cannot set STOPSIGNAL (systemd stops cleanly on SIGRTMIN+3); a one-line build can.
printf 'FROM claimops.local/kind-node-base:%s-import\nSTOPSIGNAL SIGRTMIN+3\n' "$tag" \
  | DOCKER_BUILDKIT=0 docker build -q -t "claimops.local/kind-node-base:$tag" - >/dev/null
docker rmi "claimops.local/kind-node-base:$tag-import" >/dev/null
log "node base in $((SECONDS - start)) s"

# 2. The images kubeadm and kind's manifests name, each from our binaries.
start=$SECONDS
images=()
component() { # component <image> <rootfs or ""> <entrypoint json> <file:dest>...
  local name=$1 base=$2 entry=$3; shift 3
  local dir=$work/img
  rm -rf "$dir"; mkdir -p "$dir"
  if [[ -n $base ]]; then cp -a "$base/." "$dir/"; fi
  mkdir -p "$dir/usr/local/bin" "$dir/tmp" "$dir/etc"
  for spec in "$@"; do install -m 0755 "${spec%%:*}" "$dir/${spec#*:}"; done
  tar -C "$dir" -c . | docker import --change "ENTRYPOINT $entry" \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' - "$name" >/dev/null
  images+=("$name")
}
mapfile -t wanted < <("$kube/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null)
for want in "${wanted[@]}"; do
  case $want in
    */kube-proxy:*) component "$want" "$tools" '["/usr/local/bin/kube-proxy"]' "$kube/kube-proxy:usr/local/bin/kube-proxy" ;;
    */kube-*:*) cmd=${want##*/}; cmd=${cmd%%:*}
      component "$want" "" "[\"/usr/local/bin/$cmd\"]" "$kube/$cmd:usr/local/bin/$cmd" ;;
    */etcd:*) component "$want" "" '["/usr/local/bin/etcd"]' "$bin/etcd-$ETCD_VERSION/etcd:usr/local/bin/etcd" ;;
    */coredns:*) component "$want" "" '["/coredns"]' "$bin/coredns-$COREDNS_VERSION/coredns:coredns" ;;
    */pause:*) component "$want" "" '["/pause"]' "$bin/pause-$KUBERNETES_VERSION/pause:pause" ;;
    *) log "unexpected image in kubeadm's list: $want"; exit 1 ;;
  esac
done
# kind's containerd sandbox image may differ from kubeadm's pause tag.
sandbox=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$rfs/etc/containerd/config.toml")
[[ " ${images[*]} " == *" $sandbox "* ]] || component "$sandbox" "" '["/pause"]' "$bin/pause-$KUBERNETES_VERSION/pause:pause"
storage=$rfs/kind/manifests/default-storage.yaml
provisioner=$(grep -oE 'image: [^ ]*local-path-provisioner[^ ]*' "$storage" | head -1 | cut -d' ' -f2)
helper=$(grep -oE '[^ ]*local-path-helper:[^ ]*' "$storage" | head -1)
component "$provisioner" "" '["/usr/local/bin/local-path-provisioner"]' \
  "$bin/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION/local-path-provisioner:usr/local/bin/local-path-provisioner"
component "$helper" "$tools" '["/bin/sh"]'
log "component images (${#images[@]}) in $((SECONDS - start)) s"

# 3. The node: the base plus those images in its containerd, pinned so the kubelet keeps them.
start=$SECONDS
docker rm -f claimops-node-build >/dev/null 2>&1 || true
docker run -d --name claimops-node-build --privileged --entrypoint sleep \
  claimops.local/kind-node-base:$tag infinity >/dev/null
docker exec -d claimops-node-build containerd
for _ in $(seq 30); do docker exec claimops-node-build ctr version >/dev/null 2>&1 && break; sleep 1; done
docker save "${images[@]}" | docker exec -i claimops-node-build ctr -n k8s.io images import --all-platforms --no-unpack - >/dev/null
for img in "${images[@]}"; do
  ref=$img; [[ $ref == */*/* || $ref == *.*/* ]] || ref=docker.io/$ref
  docker exec claimops-node-build ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
done
docker exec claimops-node-build sh -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done'
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' claimops-node-build "$image" >/dev/null
docker rmi claimops.local/kind-node-base:$tag "${images[@]}" >/dev/null 2>&1 || true
log "node image in $((SECONDS - start)) s"
mkdir -p "$cache/images"
start=$SECONDS
rm -f "$cache"/images/kind-node-*.tar.zst
docker save "$image" | zstd -q -3 -T0 -o "$archive.tmp" && mv "$archive.tmp" "$archive"
log "saved $archive ($(du -h "$archive" | cut -f1)) in $((SECONDS - start)) s; built in $((SECONDS - start_all)) s"
echo "$image"
