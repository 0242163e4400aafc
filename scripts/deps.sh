#!/usr/bin/env bash
# Installs, with apt-get, the Debian packages engaged needs to build, test or benchmark — only those
# that are absent, so a machine that has them all is left untouched and no network is used.
#   scripts/deps.sh build   compiler, Meson, libraries
#   scripts/deps.sh test    build + test tools (cmocka, clang sanitizer runtime, Node.js, and
#                           Chromium for the browser tests, driven headless by playwright-core)
#   scripts/deps.sh bench   test + nginx and wrk
set -euo pipefail
level=${1:-build}
pkgs=(gcc make meson ninja-build pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev zlib1g-dev libisal-dev libssl-dev libjemalloc-dev)
case $level in
  build) ;;
  test) pkgs+=(libcmocka-dev clang libclang-rt-14-dev nodejs npm chromium) ;;
  bench) pkgs+=(libcmocka-dev clang libclang-rt-14-dev nodejs npm chromium nginx-light wrk) ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node and npm may come from outside Debian's packages (as on this project's machines): a working binary is enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done; missing=("${tmp[@]}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
