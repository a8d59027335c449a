#!/usr/bin/env bash
# Fuzz smoke test (for CI): builds every cargo-fuzz target of tests/fuzz and
# runs each for a few seconds from its committed corpus (new inputs go to a
# temporary directory, the corpus is not touched). Exits non-zero when a
# target crashes, times out or fails to build; prints why and exits 0 when
# the nightly toolchain or cargo-fuzz is missing. About a minute of fuzzing
# on 2 cores for the 20 targets (build time excluded).
#
#   bash tests/fuzz/smoke.sh            # FUZZ_SMOKE_SECONDS=3 per target
#
# A crash leaves its input in tests/fuzz/artifacts/<target>/; see
# docs/fuzzing.md for minimising it and adding it to tests/fuzz/regressions/.
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds="${FUZZ_SMOKE_SECONDS:-3}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz smoke: skipped: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: skipped: cargo-fuzz is not installed (cargo install cargo-fuzz)"
    exit 0
fi

# No sanitizer: plantwatch and its dependencies have no unsafe code, and the
# crashes looked for are panics (debug assertions and overflow checks are on).
flags=(--fuzz-dir tests/fuzz --sanitizer none)
echo "== fuzz smoke: building the targets"
if ! cargo +nightly fuzz build "${flags[@]}"; then
    echo "fuzz smoke: FAILED: the targets do not build"
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in $(cargo +nightly fuzz list --fuzz-dir tests/fuzz); do
    dirs=("$work/$target" "tests/fuzz/corpus/$target")
    mkdir -p "$work/$target"
    [ -d "tests/fuzz/regressions/$target" ] && dirs+=("tests/fuzz/regressions/$target")
    if cargo +nightly fuzz run "${flags[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 >"$work/$target.log" 2>&1; then
        echo "fuzz smoke: $target ok ($(grep -Eo 'DONE +cov: [0-9]+ ft: [0-9]+' "$work/$target.log" | tail -1 | tr -s ' ')," \
            "$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$work/$target.log" | grep -Eo '[0-9]+$') runs)"
    else
        echo "fuzz smoke: $target FAILED:"
        grep -E "panicked|ERROR|SUMMARY|Test unit written|timeout" "$work/$target.log" | head -20
        failed+=("$target")
    fi
done
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz smoke: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz smoke: every target ran ${seconds} s without a crash"
