#!/usr/bin/env bash
# Black-box suite: drives build/engaged with real clients (analytics-node, rudder-sdk-node, curl-style cases).
#   tests/e2e/run.sh                      # from anywhere; builds nothing, needs build/engaged
#   tests/e2e/run.sh tests/e2e/cases.test.mjs   # only some files
#   ENGAGED_BIN=/path/to/engaged tests/e2e/run.sh
#   ENGAGED_CASES='50-batch' tests/e2e/run.sh tests/e2e/cases.test.mjs
#   ENGAGED_KEEP_DATA=1 keeps the temp data dirs of passing servers
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

die() { echo "e2e: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found (scripts/deps.sh test installs it)"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "node >= 20 needed, found $(node --version)"

bin=${ENGAGED_BIN:-$root/build/engaged}
[ -x "$bin" ] || die "engaged binary not found at $bin: run make first (or set ENGAGED_BIN)"

# Install the pinned SDKs when node_modules is missing or older than the lockfile.
stamp=$here/node_modules/.engaged-lock.sha256
want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "e2e: npm ci (tests/e2e)" >&2
  (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || die "npm ci failed"
  echo "$want" >"$stamp"
fi

if [ $# -eq 0 ]; then
  set -- "$here"/*.test.mjs
fi

# One file at a time (each starts its own servers); every test has a hard timeout.
exec nice -n 5 node --test --test-concurrency=1 --test-timeout=180000 "$@"
