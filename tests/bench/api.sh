#!/usr/bin/env bash
# API speed: a cached GET of one point on the demo plant, 64 connections, with
# oha (`cargo install --locked oha`): at a fixed 15,000 requests/s (latency)
# and unlimited (throughput). /health, which does no work, is measured in the
# same run as the baseline of the HTTP stack itself.
#
#   bash tests/bench/api.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
oha=$(command -v oha || echo "$HOME/.cargo/bin/oha")
[ -x "$oha" ] || { echo "needs oha: cargo install --locked oha" >&2; exit 1; }
cargo build --release --quiet --bin plantwatch
store=$(mktemp -d)
port=18080
PLANTWATCH__STORE__PATH="$store/store" PLANTWATCH__LOG__LEVEL=warn \
  target/release/plantwatch demo --listen "127.0.0.1:$port" > /dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$store"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/ready" > /dev/null && break; sleep 0.1; done
sleep 2 # the first polls
point="http://127.0.0.1:$port/api/v1/devices/1005/points/analog-input:1"
run() { "$oha" -c 64 -z "${seconds}s" --no-tui "$@" 2>&1 | grep -E "Requests/sec|50.00%|99.00%" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }
echo "point  @15000/s: $(run -q 15000 "$point")"
echo "health @15000/s: $(run -q 15000 "http://127.0.0.1:$port/health")"
echo "point  unlimited: $(run "$point")"
echo "health unlimited: $(run "http://127.0.0.1:$port/health")"
