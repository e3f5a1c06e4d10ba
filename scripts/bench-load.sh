#!/usr/bin/env bash
# The memory-per-session measurement: builds rtmrec and rtmload, runs the
# real server (with -pprof on its admin listener) and rtmload against it as
# separate processes (all of rtmload's connections come from one address,
# so the per-address limits are off), and prints rtmload's report: setup latencies, the
# server's RSS, heap and goroutines per session, CPU-s per session-minute,
# recorder queue drops, and every uploaded file decoded with ffmpeg. The
# server's heap and goroutine profiles at the end of the hold, rtmload's
# JSON summary and the server's log are left in $OUT.
#
#   SESSIONS=1000 MEDIA=audio DURATION=60s bash scripts/bench-load.sh
#
# PROFILE_RATE=512 samples the server's heap profile every 512 bytes
# allocated (GODEBUG=memprofilerate; the default, 512 KiB, is too coarse to
# tell a session's owners apart) at some cost in CPU: do not take the CPU
# figure from such a run. Extra arguments go to rtmload. RTMREC=path runs that server binary instead
# of building one (to compare two builds with the same rtmload). The machine should be otherwise idle-ish:
# check `uptime` and say how loaded it was with the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions="${SESSIONS:-1000}"
media="${MEDIA:-audio}"
duration="${DURATION:-60s}"
out="${OUT:-bin/bench-load}"

server="${RTMREC:-bin/rtmrec}"
if [ -z "${RTMREC:-}" ]; then
  go build -o bin/rtmrec ./cmd/rtmrec
fi
go build -o bin/rtmload ./cmd/rtmload
mkdir -p "$out"
data="$(mktemp -d)"
log="$out/rtmrec.log"
echo "server: $server" >&2
godebug="${GODEBUG:-}"
if [ -n "${PROFILE_RATE:-}" ]; then
  godebug="${godebug:+$godebug,}memprofilerate=$PROFILE_RATE"
fi
GODEBUG="$godebug" "$server" -listen 127.0.0.1:0 -admin-listen 127.0.0.1:0 -pprof -data-dir "$data" \
  -allow-private-urls -max-sessions 0 -max-recordings 0 -min-free-disk-mb 256 \
  -max-conns-per-ip 0 -conn-rate-per-ip 0 \
  -shutdown-timeout 120s 2>"$log" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

# The addresses are in the "rtmrec listening" log line.
addr="" admin=""
for _ in $(seq 100); do
  line="$(grep -m1 '"msg":"rtmrec listening"' "$log" || true)"
  if [ -n "$line" ]; then
    addr="$(sed -E 's/.*"addr":"([^"]+)".*/\1/' <<<"$line")"
    admin="$(sed -E 's/.*"admin_addr":"([^"]+)".*/\1/' <<<"$line")"
    break
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "rtmrec did not start" >&2; cat "$log" >&2; exit 1; }

echo "load before: $(uptime)" >&2
# rtmload shares the machine with the server; its memory is not measured,
# so it trades memory for less garbage collection (RTMLOAD_GOGC overrides).
GOGC="${RTMLOAD_GOGC:-400}" bin/rtmload -url "ws://$addr/rtm" -metrics-url "http://$admin/metrics" -server-pid "$pid" \
  -sessions "$sessions" -media "$media" -duration "$duration" -record -verify-files \
  -profile-dir "$out" "$@" >"$out/summary.json"
echo "load after: $(uptime)" >&2
echo "profiles: go tool pprof -sample_index=inuse_space -top bin/rtmrec $out/heap.pprof" >&2
