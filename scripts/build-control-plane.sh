#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok) from Go modules and cache the binaries by version. A warm cache returns at once.
# Usage: scripts/build-control-plane.sh   -> prints the directory holding the binaries.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"   # the etcd server k8s.io/kubernetes ${K8S_VERSION} requires
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"   # kwok release that targets Kubernetes 1.36
CACHE="${AIRFLOW_KANIKO_CACHE:-$HOME/.cache/airflow-kaniko}"
OUT="$CACHE/control-plane/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
# kwok's ClusterLogs / Logs CRDs (from the same kwok module): the tests create pod logs at run time.
CRDS=(kwok.x-k8s.io_clusterlogs.yaml kwok.x-k8s.io_logs.yaml)

have_all() {
  for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done
  for c in "${CRDS[@]}"; do [ -f "$OUT/crds/$c" ] || return 1; done
}
if have_all; then echo "$OUT"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
patch="${K8S_VERSION##*.}"
staging_version="v0.${minor}.${patch}"

go mod init airflow-kaniko/control-plane >/dev/null 2>&1
go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" >/dev/null
gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${K8S_VERSION}.mod"
# Every staging module that k8s.io/kubernetes replaces with ./staging/... gets its published twin.
for m in $(awk '/=> \.\/staging/ {print $1}' "$gomod"); do
  go mod edit -replace "${m}=${m}@${staging_version}"
done
go mod edit -require "k8s.io/kubernetes@${K8S_VERSION}" -require "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
go mod tidy -e >/dev/null 2>&1 || true

ld=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
  ld+=" -X ${pkg}.gitTreeState=clean"
done
ld="-s -w${ld}"

[ -x "$OUT/etcd" ] || go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  [ -x "$OUT/$c" ] || go build -trimpath -ldflags "$ld" -o "$OUT/$c" "k8s.io/kubernetes/cmd/$c"
done
[ -x "$OUT/kwok" ] || GOBIN="$OUT" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
kwok_dir="$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
mkdir -p "$OUT/crds"
for c in "${CRDS[@]}"; do cp "$kwok_dir/kustomize/crd/bases/$c" "$OUT/crds/$c"; done
have_all
echo "$OUT"
