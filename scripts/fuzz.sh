#!/usr/bin/env bash
# Runs every fuzz target for a while (default 30s each): the RTM, Ant Media
# and WCS decoders, offer trimming, the recorder's depacketizers and repair, tokens, URL
# checks, backoff and the webhook outbox. New crashers land in the package's testdata/fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-30s}"
for pkg in $(go list ./...); do
  for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "--- $pkg $f"
    go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"
  done
done
