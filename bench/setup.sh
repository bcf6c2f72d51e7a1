#!/usr/bin/env bash
# Installs what `npm run bench` needs and the project does not ship: wrk (the
# load generator) and nginx (the reference proxy), from Debian. Idempotent:
# does nothing when both are on PATH. Fails with a clear message otherwise.
set -euo pipefail

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ ${#need[@]} -eq 0 ] && exit 0

fail() {
  echo "bench/setup.sh: cannot install ${need[*]}: $1" >&2
  echo "bench/setup.sh: install them by hand (Debian: apt-get install -y ${need[*]}) and run the bench again" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available (not a Debian-like system)"
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "not root and no sudo"
  sudo="sudo -n"
fi

echo "bench/setup.sh: installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# Installing nginx must not leave a system nginx running (it would take port 80
# and outlive the bench): policy-rc.d 101 tells Debian's scripts not to start services.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

if ! $sudo apt-get install -y --no-install-recommends "${need[@]}" >/tmp/hookgate-bench-apt.log 2>&1; then
  $sudo apt-get update >>/tmp/hookgate-bench-apt.log 2>&1 || fail "apt-get update failed (see /tmp/hookgate-bench-apt.log)"
  $sudo apt-get install -y --no-install-recommends "${need[@]}" >>/tmp/hookgate-bench-apt.log 2>&1 ||
    fail "apt-get install failed (see /tmp/hookgate-bench-apt.log)"
fi

command -v wrk >/dev/null 2>&1 || fail "wrk is still not on PATH after the install"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || fail "nginx is still not found after the install"
echo "bench/setup.sh: installed ${need[*]}" >&2
