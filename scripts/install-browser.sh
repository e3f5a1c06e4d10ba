#!/usr/bin/env bash
# Installs what the browser end-to-end tests (integration/browser_test.go)
# need: Chromium from Debian (driven headless through playwright-core, never
# with the browsers Playwright would download), fonts so pages render, and
# ffmpeg/ffprobe to check the recordings. Then the pinned npm packages of
# integration/browser via `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
[ -d /usr/share/fonts/truetype/liberation ] || need_apt+=(fonts-liberation)
command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
bash scripts/apt-install.sh "${need_apt[@]}"

command -v npm >/dev/null || { echo "install-browser: npm (Node.js >= 20) is required" >&2; exit 1; }
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing itself,
# but be explicit: the tests use /usr/bin/chromium.
(cd integration/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)

echo "install-browser: $(chromium --version 2>/dev/null || echo 'chromium ?'), playwright-core $(node -p 'require("./integration/browser/node_modules/playwright-core/package.json").version')"
