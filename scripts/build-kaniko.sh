#!/usr/bin/env bash
# Build the kaniko executor from its Go module and cache it by module and version.
# A warm cache returns at once.
# Usage: scripts/build-kaniko.sh   -> prints the path of the executor binary.
#
# The operator's default image is ghcr.io/osscontainertools/kaniko:v1.28.2, so the default is
# that fork at that version. When the Go module proxy refuses it (it answered 403 "This module
# version is not available" on 2026-12-03), the script falls back to the archived upstream
# github.com/GoogleContainerTools/kaniko v1.24.0, the last upstream release: same executor, same
# flags. It says so on stderr. KANIKO_FALLBACK=0 turns the fallback off.
set -euo pipefail

KANIKO_MODULE="${KANIKO_MODULE:-github.com/osscontainertools/kaniko}"
KANIKO_VERSION="${KANIKO_VERSION:-v1.28.2}"
FALLBACK_MODULE="${KANIKO_FALLBACK_MODULE:-github.com/GoogleContainerTools/kaniko}"
FALLBACK_VERSION="${KANIKO_FALLBACK_VERSION:-v1.24.0}"
CACHE="${AIRFLOW_KANIKO_CACHE:-$HOME/.cache/airflow-kaniko}"

out_for() {  # module version -> cached binary path
  if [ "$1" = "github.com/osscontainertools/kaniko" ]; then
    echo "$CACHE/kaniko/$2/executor"
  else
    echo "$CACHE/kaniko/${1//\//_}/$2/executor"
  fi
}

primary="$(out_for "$KANIKO_MODULE" "$KANIKO_VERSION")"
if [ -x "$primary" ]; then echo "$primary"; exit 0; fi
fallback="$(out_for "$FALLBACK_MODULE" "$FALLBACK_VERSION")"
# The proxy refused the primary less than a day ago: the cached fallback answers at once.
refused="$(dirname "$primary")/.refused-by-proxy"
if [ "${KANIKO_FALLBACK:-1}" != 0 ] && [ -x "$fallback" ] && [ -n "$(find "$refused" -mmin -1440 2>/dev/null)" ]; then
  echo "build-kaniko: ${KANIKO_MODULE}@${KANIKO_VERSION} was refused by the Go module proxy (see $refused);" \
       "using ${FALLBACK_MODULE}@${FALLBACK_VERSION}" >&2
  echo "$fallback"; exit 0
fi

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0 GOFLAGS=-mod=mod
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# Fetch the module source (not its dependencies yet). Prints the extracted directory.
fetch() {
  (cd "$work" && [ -f go.mod ] || go mod init airflow-kaniko/kaniko-build >/dev/null 2>&1
   cd "$work" && go mod download -json "$1@$2") >"$work/download.json" 2>&1 || return 1
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$work/download.json"
}

build() {  # module version srcdir out
  local module="$1" version="$2" src="$3" out="$4" copy="$work/src"
  # Build inside a writable copy of the module itself: its go.mod, replace directives and
  # vendor/ (if any) then apply exactly as in the project's own release builds.
  rm -rf "$copy"; cp -r "$src" "$copy"; chmod -R u+w "$copy"
  local mod_flag=-mod=mod
  [ -f "$copy/vendor/modules.txt" ] && mod_flag=-mod=vendor
  mkdir -p "$(dirname "$out")"
  (cd "$copy" && GOFLAGS="$mod_flag" go build -trimpath \
     -ldflags "-s -w -X ${module}/pkg/version.version=${version}" \
     -o "$out.tmp" ./cmd/executor)
  mv "$out.tmp" "$out"
}

if dir="$(fetch "$KANIKO_MODULE" "$KANIKO_VERSION")" && [ -n "$dir" ]; then
  build "$KANIKO_MODULE" "$KANIKO_VERSION" "$dir" "$primary"
  echo "$primary"; exit 0
fi
echo "build-kaniko: ${KANIKO_MODULE}@${KANIKO_VERSION} is not available from the Go module proxy:" >&2
grep -o '"Error": ".*"' "$work/download.json" >&2 || cat "$work/download.json" >&2
if [ "${KANIKO_FALLBACK:-1}" = 0 ]; then exit 1; fi
mkdir -p "$(dirname "$refused")"
grep -o '"Error": ".*"' "$work/download.json" > "$refused" || cp "$work/download.json" "$refused"

echo "build-kaniko: falling back to ${FALLBACK_MODULE}@${FALLBACK_VERSION}" >&2
if [ -x "$fallback" ]; then echo "$fallback"; exit 0; fi
dir="$(fetch "$FALLBACK_MODULE" "$FALLBACK_VERSION")" || { cat "$work/download.json" >&2; exit 1; }
build "$FALLBACK_MODULE" "$FALLBACK_VERSION" "$dir" "$fallback"
echo "$fallback"
