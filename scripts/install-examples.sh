#!/usr/bin/env bash
# Installs the pinned npm packages of the documentation's Node.js examples
# (docs/examples: the standardwebhooks library of webhook-receiver.mjs) from
# their lock file, for integration/webhook_examples_test.go.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v npm >/dev/null || { echo "install-examples: npm (Node.js >= 20) is required" >&2; exit 1; }
(cd docs/examples && npm ci --no-audit --no-fund)
echo "install-examples: standardwebhooks $(node -p "require('./docs/examples/node_modules/standardwebhooks/package.json').version")"
