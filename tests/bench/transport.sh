#!/usr/bin/env bash
# Transport speed: `plantwatch bench` against `plantwatch simulate` in another
# process, with 1 and 64 requests in flight, beside a raw UDP echo pair (the
# ceiling on this machine) measured in the same run. Figures are reported as
# ratios of that baseline, since shared machines are noisy.
#
#   bash tests/bench/transport.sh [SECONDS] [DEVICES]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}
devices=${2:-10}
base=47900
cargo build --release --quiet --bin plantwatch
cargo build --release --quiet -p plantwatch-actors --example udp_echo
bin=target/release/plantwatch
echo_bin=target/release/examples/udp_echo
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

"$echo_bin" serve 127.0.0.1:47990 & pids+=($!)
"$bin" simulate --devices "$devices" --layout port --bind "127.0.0.1:$base" > /dev/null & pids+=($!)
sleep 1
targets=$(seq -s, -f "127.0.0.1:%g" "$base" $((base + devices - 1)))

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
for k in 1 64; do
  echo_line=$("$echo_bin" load 127.0.0.1:47990 "$k" "$seconds")
  bench_line=$("$bin" bench --target "$targets" --in-flight "$k" --seconds "$seconds" 2>/dev/null | tail -n 1)
  e=$(echo "$echo_line" | field round_trips_per_s)
  b=$(echo "$bench_line" | field reads_per_s)
  echo "in_flight=$k udp_echo: $echo_line"
  echo "in_flight=$k plantwatch: $bench_line"
  echo "in_flight=$k ratio plantwatch/udp_echo = $(awk -v b="$b" -v e="$e" 'BEGIN { printf "%.2f", b / e }')"
done
