#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (CI runs as root) for the sandbox tests:
# the packages the test world needs, and a running Docker engine. Idempotent.
set -euo pipefail

packages=(docker.io debootstrap nmap openssh-client pebble age)  # age: the break-glass interop tests
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# docker.io's client matches its daemon; another client may sit earlier on PATH.
docker=/usr/bin/docker
if ! "$docker" info >/dev/null 2>&1; then
  log=${AINI_DOCKERD_LOG:-/var/log/aini-dockerd.log}
  # setsid: the daemon must outlive this script (CI steps run it, then pytest).
  setsid dockerd >>"$log" 2>&1 </dev/null &
  for _ in $(seq 60); do
    "$docker" info >/dev/null 2>&1 && break
    sleep 1
  done
  "$docker" info >/dev/null 2>&1 || { echo "dockerd did not start; see $log" >&2; tail -n 30 "$log" >&2; exit 1; }
fi
echo "docker engine ready: $("$docker" version --format '{{.Server.Version}}')"
