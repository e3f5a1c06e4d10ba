#!/bin/sh
# Makes ../firstrelease, a data directory written by rtmrec's first release
# (commit ac102c5) with work still queued in it: see ../README.md.
# Run from anywhere inside the repository; it needs the Go toolchain and
# builds the first release in a temporary worktree, removed afterwards.
set -eu
repo=$(git rev-parse --show-toplevel)
here=$repo/internal/upgrade/testdata
wt=$(mktemp -d /tmp/rtmrec-first-release.XXXXXX)
rmdir "$wt"
git -C "$repo" worktree add --detach "$wt" ac102c5
trap 'git -C "$repo" worktree remove --force "$wt"' EXIT
cp "$here/make/firstrelease_test.go" "$wt/integration/"
rm -rf "$here/firstrelease.new"
(cd "$wt" && FIRST_RELEASE_OUT="$here/firstrelease.new" go test -count=1 -run '^TestMakeFirstReleaseDataDir$' ./integration)
rm -f "$here/firstrelease.new/data/LOCK"
rm -rf "$here/firstrelease"
mv "$here/firstrelease.new" "$here/firstrelease"
