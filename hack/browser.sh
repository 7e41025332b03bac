#!/usr/bin/env bash
# Browser test support for services/web.
#   hack/browser.sh deps   install Debian chromium (if missing) and npm ci in services/web
#   hack/browser.sh test   deps, then run services/web/e2e against bin/imkube
# Idempotent: a second run installs nothing. Nothing downloads a browser of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
WEB=services/web
CHROMIUM=${IMKUBE_CHROMIUM:-/usr/bin/chromium}

deps() {
  if [ ! -x "$CHROMIUM" ]; then
    echo "browser.sh: installing Debian chromium"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  # npm ci only when the lockfile changed since the last install.
  local stamp="$WEB/node_modules/.imkube-lock.sha256"
  local want
  want=$(sha256sum "$WEB/package-lock.json" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "browser.sh: npm ci in $WEB"
    (cd "$WEB" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
}

case "${1:-test}" in
deps) deps ;;
test)
  deps
  [ -x bin/imkube ] || { echo "browser.sh: bin/imkube is missing: run make build" >&2; exit 1; }
  # Node 20 has a WebSocket client only behind a flag (the SDK e2e test uses it).
  NODE_FLAGS=()
  if node -e 'process.exit(process.allowedNodeEnvironmentFlags.has("--experimental-websocket") && !globalThis.WebSocket ? 0 : 1)'; then
    NODE_FLAGS+=(--experimental-websocket)
  fi
  IMKUBE_BIN="$PWD/bin/imkube" IMKUBE_CHROMIUM="$CHROMIUM" IMKUBE_TEST_OUTPUT="$PWD/test-output/browser" \
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 node "${NODE_FLAGS[@]}" --test --test-timeout=240000 "$WEB/e2e/"
  ;;
*) echo "usage: $0 deps|test" >&2; exit 2 ;;
esac
