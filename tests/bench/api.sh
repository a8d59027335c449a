#!/usr/bin/env bash
# API speed: a cached GET of one point on the demo plant, 64 connections, with
# oha (`cargo install --locked oha`), at a fixed 15,000 requests/s (latency)
# and unlimited (throughput). Measured in the same run:
#   - /health, which does no work: the baseline of the HTTP stack itself;
#   - the same point read on a second demo with authentication off: the
#     overhead of API keys plus rate limiting.
# The read budget is raised (PLANTWATCH__RATE_LIMIT__READ_PER_S) so the
# limiter runs on every request without refusing the load.
#
#   bash tests/bench/api.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
oha=$(command -v oha || echo "$HOME/.cargo/bin/oha")
[ -x "$oha" ] || { echo "needs oha: cargo install --locked oha" >&2; exit 1; }
cargo build --release --quiet --bin plantwatch
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
start() { # port auth
  PLANTWATCH__STORE__PATH="$work/store-$1" PLANTWATCH__LOG__LEVEL=warn PLANTWATCH__AUTH__ENABLED="$2" \
  PLANTWATCH__RATE_LIMIT__READ_PER_S=1000000 \
    target/release/plantwatch demo --devices 5 --listen "127.0.0.1:$1" > "$work/out-$1" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" > /dev/null && break; sleep 0.1; done
}
start 18080 true
start 18081 false
sleep 2 # the first polls
key=$(sed -n 's/^read key: //p' "$work/out-18080")
point=/api/v1/devices/1004/points/analog-input:1
run() { "$oha" -c 64 -z "${seconds}s" --no-tui "$@" 2>&1 | grep -E "Requests/sec|50.00%|99.00%" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }
echo "point, key + rate limit @15000/s: $(run -q 15000 -H "Authorization: Bearer $key" "http://127.0.0.1:18080$point")"
echo "point, no auth          @15000/s: $(run -q 15000 "http://127.0.0.1:18081$point")"
echo "health (baseline)       @15000/s: $(run -q 15000 "http://127.0.0.1:18080/health")"
echo "point, key + rate limit unlimited: $(run -H "Authorization: Bearer $key" "http://127.0.0.1:18080$point")"
echo "point, no auth          unlimited: $(run "http://127.0.0.1:18081$point")"
echo "health (baseline)       unlimited: $(run "http://127.0.0.1:18080/health")"
