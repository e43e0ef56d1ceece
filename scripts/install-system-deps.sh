#!/usr/bin/env bash
# System packages the devcluster needs that PyPI and the Go module proxy do not provide:
# Prometheus (Debian's package) and util-linux's unshare (private mounts for pod volumes).
# Go itself must already be installed (1.26 or newer).
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${need[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
  echo "[setup] Go 1.26+ is required to build kube-apiserver and MinIO (https://go.dev/doc/install)" >&2
  exit 1
fi
echo "[setup] system dependencies present: prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), $(go version | awk '{print $3}')"
