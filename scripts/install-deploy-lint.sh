#!/usr/bin/env bash
# Installs what deploy/deploy_test.go needs: shellcheck (Debian) for the
# Dockerfile's RUN lines, the pinned Dockerfile linter of deploy/lint (npm,
# scripts ignored: dockerlinter's postinstall would download shellcheck),
# and systemd-analyze (Debian's systemd) for the unit file. hadolint has no
# Debian package and no npm package that ships its binary, so the test
# uses hadolint only where one is on PATH already.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
bash scripts/apt-install.sh "${need_apt[@]}"

command -v npm >/dev/null || { echo "install-deploy-lint: npm is required" >&2; exit 1; }
(cd deploy/lint && npm ci --ignore-scripts --no-audit --no-fund)
echo "install-deploy-lint: $(shellcheck --version | sed -n 2p), dockerlinter $(node -p 'require("./deploy/lint/node_modules/dockerlinter/package.json").version'), $(systemd-analyze --version | head -1)"
