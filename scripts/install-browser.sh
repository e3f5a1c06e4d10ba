#!/usr/bin/env bash
# Installs what the browser end-to-end tests (integration/browser_test.go)
# need: Chromium and Firefox ESR from Debian (driven headless through
# playwright-core and puppeteer-core, never with the browsers those would
# download), fonts so pages render, and ffmpeg/ffprobe to check the
# recordings. Then the pinned npm packages of integration/browser via
# `npm ci`, among them the browser SDKs of Ant Media and Flashphoner WCS that
# the compatibility tests load unmodified.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v firefox-esr >/dev/null || need_apt+=(firefox-esr)
[ -d /usr/share/fonts/truetype/liberation ] || need_apt+=(fonts-liberation)
command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
bash scripts/apt-install.sh "${need_apt[@]}"

command -v npm >/dev/null || { echo "install-browser: npm (Node.js >= 20) is required" >&2; exit 1; }
# playwright-core and puppeteer-core download nothing themselves, but be
# explicit: the tests use /usr/bin/chromium and /usr/bin/firefox-esr.
(cd integration/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund)

version() { node -p "require('./integration/browser/node_modules/$1/package.json').version"; }
echo "install-browser: $(chromium --version 2>/dev/null || echo 'chromium ?'), $(firefox-esr --version 2>/dev/null || echo 'firefox-esr ?'), playwright-core $(version playwright-core), puppeteer-core $(version puppeteer-core), @antmedia/webrtc_adaptor $(version @antmedia/webrtc_adaptor), @flashphoner/websdk $(version @flashphoner/websdk)"
