#!/usr/bin/env bash
# Builds the MinIO server once into a tool cache so upload/s3_test.go can run
# against a real S3-compatible store. Building takes a few minutes; it is
# skipped when the binary is already there.
#
#   RTMREC_TOOLS  cache dir (default: $HOME/.cache/rtmrec-tools); binary lands in $RTMREC_TOOLS/bin/minio
#   MINIO_VERSION module version to install (default: the pinned one below)
set -euo pipefail

tools="${RTMREC_TOOLS:-$HOME/.cache/rtmrec-tools}"
bin="$tools/bin/minio"
# Pinned to the build tested here, so a fresh machine builds the same server.
version="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"

if [[ -x "$bin" ]]; then
	echo "minio already installed: $bin"
	exit 0
fi

mkdir -p "$tools/bin"
echo "building github.com/minio/minio@$version into $tools/bin (takes several minutes)..."
# GOFLAGS is reset so a workspace or -mod setting of the caller does not leak in;
# building outside any module keeps the project's go.mod untouched.
cd "$tools"
GOFLAGS= GOBIN="$tools/bin" go install "github.com/minio/minio@$version"
echo "installed: $bin"
