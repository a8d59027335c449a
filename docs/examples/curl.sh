#!/usr/bin/env bash
# plantwatch from the shell, with curl and jq: list the devices, read a point
# (from the cache and live), write a point and relinquish it, and page through
# a point's history with the cursor.
#
#   PLANTWATCH_URL=http://127.0.0.1:8080 PLANTWATCH_KEY=pw_... docs/examples/curl.sh
#
# PLANTWATCH_KEY is an operator key: it may read and write points. The script
# writes a commandable point of the first online device at priority 8, then
# relinquishes it: run it against the demo or a test system, not a plant.
# It stops with a non-zero exit status at the first unexpected answer.
set -euo pipefail

B=${PLANTWATCH_URL:-http://127.0.0.1:8080}
K=${PLANTWATCH_KEY:?set PLANTWATCH_KEY to an operator key (plantwatch demo prints one)}

# api CURL-ARGS...: one request with the key; prints the JSON answer. An error
# answer (the envelope {"error": {"code", "message", ...}}) stops the script.
api() {
    local answer
    if ! answer=$(curl -sS --fail-with-body -H "Authorization: Bearer $K" "$@"); then
        echo "unexpected answer to: curl $*" >&2
        echo "$answer" >&2
        exit 1
    fi
    printf '%s\n' "$answer"
}

# check JQ-FILTER JSON: stops the script unless the filter is true for JSON.
check() {
    jq -e "$1" >/dev/null <<<"$2" || { echo "unexpected answer (wanted $1): $2" >&2; exit 1; }
}

echo "== online devices"
devices=$(api "$B/api/v1/devices?status=online&limit=10")
jq -r '.items[] | "\(.instance)\t\(.status)\t\(.name)"' <<<"$devices"
device=$(jq -r '.items[0].instance // empty' <<<"$devices")
[ -n "$device" ] || { echo "no online device" >&2; exit 1; }

# The points of that device: one analog input to read, and a commandable
# analog point to write.
points=$(api "$B/api/v1/devices/$device/points?limit=1000")
input=$(jq -r '[.items[] | select(.object | startswith("analog-input:"))][0].object // empty' <<<"$points")
output=$(jq -r '[.items[] | select(.commandable and (.object | startswith("analog-")))][0].object // empty' <<<"$points")
[ -n "$input" ] && [ -n "$output" ] || { echo "device $device has no analog input or commandable analog point" >&2; exit 1; }

echo "== $input of device $device, from the cache"
point=$(api "$B/api/v1/devices/$device/points/$input")
jq -c '{object, name, value, units, quality, updated_at}' <<<"$point"

echo "== $input, read from the device now (?live=true)"
point=$(api "$B/api/v1/devices/$device/points/$input?live=true")
check '.live == true and .quality == "good"' "$point"
jq -c '{object, value, units, quality, updated_at}' <<<"$point"

echo "== write 42.5 to $output at priority 8"
answer=$(api -X PUT -H 'Content-Type: application/json' \
    -d '{"value": 42.5, "priority": 8}' "$B/api/v1/devices/$device/points/$output")
check '.outcome == "accepted"' "$answer"
# The answer has the read-back: a higher priority (1..7) may be in control.
jq -c '{object, priority, value, active_priority, present_value, request_id}' <<<"$answer"

echo "== relinquish priority 8 of $output"
answer=$(api -X PUT -H 'Content-Type: application/json' \
    -d '{"value": null, "priority": 8}' "$B/api/v1/devices/$device/points/$output")
check '.outcome == "accepted" and .active_priority != 8' "$answer"
jq -c '{object, priority, value, active_priority, present_value}' <<<"$answer"

# Small pages, to show the cursor at work (a page takes up to 1000).
page_size=2
echo "== history of $input over the last 10 minutes, $page_size samples a page"
from=$(date -u -d '10 minutes ago' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -v-10M +%Y-%m-%dT%H:%M:%SZ)
cursor=""
pages=0
last=""
while :; do
    url="$B/api/v1/devices/$device/points/$input/history?from=$from&limit=$page_size"
    # next_cursor of the previous page, as given (it is hex: no escaping needed)
    [ -z "$cursor" ] || url="$url&cursor=$cursor"
    page=$(api "$url")
    pages=$((pages + 1))
    jq -r --arg n "$pages" '"page \($n): " + ([.items[] | "\(.value)"] | join(" "))' <<<"$page"
    # oldest first, and each page after the previous one
    check "[.items[].time] | . == unique and all(. > \"$last\")" "$page"
    last=$(jq -r '.items[-1].time // empty' <<<"$page")
    cursor=$(jq -r '.next_cursor // empty' <<<"$page")
    [ -n "$cursor" ] || break
done
echo "ok: $pages pages of history"
