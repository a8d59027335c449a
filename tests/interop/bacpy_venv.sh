#!/usr/bin/env bash
# Makes target/bacpy-venv: a venv with bac-py (tests/interop/bacpy-requirements.txt)
# for the second-peer interop tests (tests/it/interop_bacpy.rs). bac-py needs
# Python >= 3.13. Looks for one, in order:
#   $PLANTWATCH_BACPY_PYTHON, python3.13 / python3.14 / python3 on PATH (pyenv
#   shims included, if they run), ~/.pyenv/versions/3.13+*/bin/python3,
#   `uv python find 3.13`, and Debian's python3.13 package (installed with
#   apt-get when it has a candidate and we are root).
# With none it prints "SKIPPED bac-py interop: no Python >= 3.13 (...)" and
# exits 0 without making the venv (the tests then skip, or fail when
# PLANTWATCH_REQUIRE_BACPY is set). Any other failure exits non-zero.
# Idempotent: a venv whose marker matches the requirements is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/bacpy-venv
requirements=tests/interop/bacpy-requirements.txt
marker=$venv/.requirements-installed
mkdir -p target
# One setup at a time (CI, and the tests that call this on first use, may race).
exec 9>target/.bacpy-venv.lock
flock 9

new_enough() { # PYTHON: runs and is >= 3.13
    "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 13) else 1)' >/dev/null 2>&1
}

find_python() {
    local c
    for c in ${PLANTWATCH_BACPY_PYTHON:-} python3.13 python3.14 python3; do
        if command -v "$c" >/dev/null 2>&1 && new_enough "$(command -v "$c")"; then
            command -v "$c"
            return 0
        fi
    done
    for c in "$HOME"/.pyenv/versions/3.1[3-9]*/bin/python3; do
        if [ -x "$c" ] && new_enough "$c"; then
            echo "$c"
            return 0
        fi
    done
    if command -v uv >/dev/null 2>&1; then
        c=$(uv python find '>=3.13' 2>/dev/null || true)
        if [ -n "$c" ] && new_enough "$c"; then
            echo "$c"
            return 0
        fi
    fi
    if command -v apt-cache >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        if apt-cache policy python3.13 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            echo "bacpy_venv: installing python3.13 from the distribution's packages" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.13 python3.13-venv >&2 || true
            if command -v python3.13 >/dev/null 2>&1 && new_enough "$(command -v python3.13)"; then
                command -v python3.13
                return 0
            fi
        fi
    fi
    return 1
}

if [ -x "$venv/bin/python" ] && new_enough "$venv/bin/python" && cmp -s "$marker" "$requirements"; then
    echo "bac-py venv ready: $venv ($("$venv/bin/python" -c 'import bac_py, sys; print("bac-py", bac_py.__version__, "on Python", sys.version.split()[0])'))"
    exit 0
fi

if ! python=$(find_python); then
    echo "SKIPPED bac-py interop: no Python >= 3.13 (looked for \$PLANTWATCH_BACPY_PYTHON, python3.13 on PATH, ~/.pyenv/versions/3.13*, uv, apt python3.13)"
    exit 0
fi

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$marker"
echo "bac-py venv ready: $venv ($("$venv/bin/python" -c 'import bac_py, sys; print("bac-py", bac_py.__version__, "on Python", sys.version.split()[0])'))"
