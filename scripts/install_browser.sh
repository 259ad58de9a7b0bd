#!/usr/bin/env bash
# Make sure a Chromium for the browser test exists: Debian's `chromium` package at /usr/bin/chromium.
# Installs it with apt-get when it is missing and we are root; otherwise says what to do and exits 0
# (tests/test_browser.py then skips, or fails when CI=true).
set -euo pipefail

CHROMIUM="${RTCORE_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "browser: $CHROMIUM is present"
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser: installing Debian chromium with apt-get (quiet)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
        echo "browser: apt-get could not install chromium (offline?); the browser test will skip (fail under CI=true)" >&2
        exit 0
    fi
    if [ -x /usr/bin/chromium ]; then
        echo "browser: /usr/bin/chromium installed"
        exit 0
    fi
    echo "browser: apt-get finished but /usr/bin/chromium is still missing" >&2
    exit 0
fi
cat <<MSG
browser: no Chromium at $CHROMIUM, and this is not a root shell with apt-get.
  Install it once, e.g.   sudo apt-get update && sudo apt-get install chromium
  (or point RTCORE_CHROMIUM at a Chromium executable). Until then tests/test_browser.py
  is skipped (and fails when CI=true).
MSG
exit 0
