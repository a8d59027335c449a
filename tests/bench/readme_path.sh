#!/usr/bin/env bash
# The README's newcomer path, timed: a fresh clone, `cargo run --release`
# (the demo), then a write at priority 8 with curl, as the README shows.
#
#   bash tests/bench/readme_path.sh [DIR]     (DIR: where to clone; default a temp dir)
#
# Needs port 8080 free (the demo's default). Crates already in ~/.cargo are not
# downloaded again; on a machine that never built Rust, add the download time.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$(mktemp -d)/plantwatch}
now() { date +%s.%N; }

t0=$(now)
git clone -q "$src" "$dir"
cd "$dir"
t1=$(now)
cargo build --release -q
t2=$(now)
cargo run --release -q >demo.log 2>&1 &
demo=$!
trap 'kill -TERM $demo 2>/dev/null || true' EXIT
until grep -q '^operator key:' demo.log 2>/dev/null; do sleep 0.05; done
t3=$(now)
OPERATOR=$(awk '/^operator key:/ {print $3}' demo.log)
READ=$(awk '/^read key:/ {print $3}' demo.log)
until curl -sf -H "Authorization: Bearer $READ" http://127.0.0.1:8080/api/v1/devices/1001 | grep -q '"status":"online"'; do
    sleep 0.05
done
answer=$(curl -s -X PUT -H "Authorization: Bearer $OPERATOR" -H 'Content-Type: application/json' \
    -d '{"value": 42.5, "priority": 8}' http://127.0.0.1:8080/api/v1/devices/1001/points/analog-output:1)
t4=$(now)
echo "$answer"
echo "$answer" | grep -q '"outcome":"accepted"' || { echo "the write was not accepted" >&2; exit 1; }
python3 -c "
t0, t1, t2, t3, t4 = $t0, $t1, $t2, $t3, $t4
print(f'clone {t1 - t0:.1f} s, cargo build --release {t2 - t1:.1f} s, demo up {t3 - t2:.1f} s, '
      f'device online and write accepted {t4 - t3:.2f} s: total {t4 - t0:.1f} s')"
