#!/usr/bin/env bash
# Runs client_test.mjs (the official TypeScript SDK client against
# squirreld, over stdio and HTTP) with the SDK pinned in package-lock.json,
# installed with `npm ci` into tests/sdk/node_modules when the lock file
# changed.  usage: tests/sdk/run.sh /path/to/squirreld
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null && command -v npm >/dev/null || {
    echo "tests/sdk: Node.js and npm are needed (scripts/test installs them)" >&2
    exit 1
}
stamp="$here/node_modules/.lock-sha"
want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
    echo "$want" >"$stamp"
fi
exec node "$here/client_test.mjs" "$1"
