#!/usr/bin/env bash
# The long fuzz run of issue 11: every cargo-fuzz target of tests/fuzz for a
# fixed number of executions (FUZZ_RUNS, 10,000,000 by default), one target
# at a time on one core, from its working corpus tests/fuzz/work/<target>
# (kept between runs, not committed) seeded with the committed corpus. Then
# the working corpus is minimised (libFuzzer -merge=1) into the committed
# tests/fuzz/corpus/<target>/, which `cargo test` replays on stable.
#
#   nice bash tests/fuzz/run.sh                 # all targets, 10M runs each
#   FUZZ_RUNS=100000 bash tests/fuzz/run.sh frame apdu
#
# Prints one line per target: executions, coverage (libFuzzer edges and
# features), corpus size, crashes and timeouts. A crash leaves its input in
# tests/fuzz/artifacts/<target>/ and makes the script exit non-zero; see
# docs/fuzzing.md for turning it into a regression input.
set -uo pipefail
cd "$(dirname "$0")/../.."
runs="${FUZZ_RUNS:-10000000}"
flags=(--fuzz-dir tests/fuzz --sanitizer none)

cargo +nightly fuzz build "${flags[@]}" || exit 1
bin="tests/fuzz/target/x86_64-unknown-linux-gnu/release"
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir tests/fuzz)

printf '%-20s %12s %8s %8s %8s %8s %s\n' target execs cov ft corpus seconds result
failed=0
for t in "${targets[@]}"; do
    work="tests/fuzz/work/$t"
    corpus="tests/fuzz/corpus/$t"
    mkdir -p "$work" "$corpus" "tests/fuzz/artifacts/$t"
    log="tests/fuzz/work/$t.log"
    start=$(date +%s)
    "$bin/$t" "$work" "$corpus" -runs="$runs" -timeout=5 -rss_limit_mb=2048 \
        -artifact_prefix="tests/fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    execs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+')
    ft=$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+')
    if [ "$rc" -eq 0 ]; then
        result=ok
        # Minimise into the committed corpus: keep only inputs that add coverage.
        fresh="$(mktemp -d)"
        "$bin/$t" -merge=1 "$fresh" "$corpus" "$work" >>"$log" 2>&1
        rm -rf "$corpus" && mv "$fresh" "$corpus"
    else
        result="FAILED (rc $rc): $(grep -E 'panicked|SUMMARY|Test unit written' "$log" | head -2 | tr '\n' ' ')"
        failed=1
    fi
    size=$(find "$corpus" -type f | wc -l)
    printf '%-20s %12s %8s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$size" "$secs" "$result"
done
exit "$failed"
