#!/usr/bin/env bash
# Installs what tests need beyond Go: ffmpeg/ffprobe (media checks) from
# Debian, and MinIO (S3-compatible store) built once into a cache directory.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "install-tools: need root to apt-get install ${need_apt[*]}" >&2
  fi
fi
if [ -f scripts/minio.sh ]; then
  bash scripts/minio.sh
fi
