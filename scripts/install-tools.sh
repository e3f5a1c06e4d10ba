#!/usr/bin/env bash
# Installs what tests need beyond Go: ffmpeg/ffprobe (media checks), Chromium,
# Firefox ESR, playwright-core and puppeteer-core (browser end-to-end tests)
# from Debian and npm, the documentation examples' npm packages, redis-server (the cluster tests, Debian), MinIO (an
# S3-compatible store) built once into a cache directory, and the deploy
# files' checkers (a Dockerfile linter, shellcheck, systemd-analyze). Each
# part is skipped when already there.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-browser.sh   # chromium, firefox-esr, fonts, ffmpeg, npm ci
bash scripts/install-examples.sh  # docs/examples: standardwebhooks (npm ci)
bash scripts/minio.sh             # $RTMREC_TOOLS/bin/minio
bash scripts/install-deploy-lint.sh # shellcheck, deploy/lint (npm), systemd-analyze
command -v redis-server >/dev/null || bash scripts/apt-install.sh redis-server
