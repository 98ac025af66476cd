#!/usr/bin/env bash
# One file downloaded with curl: first and later download, plain and gzip, in
# MB/s of NDJSON (plain bytes / time), as in issue 22 and BENCHMARKS.md.
#
#   cli/benches/downloads.sh BINARY [BINARY...]
#
# For each binary (a release `bulkmock`), in turn: start `serve --open
# --patients $PATIENTS --resources-per-file 100000000 --port 0` (one
# Observation file), export Observation, download the file twice plain, then
# twice with `Accept-Encoding: gzip`; print one Markdown row, the load average
# and the server's peak RSS. ROUNDS (default 2) repeats the whole list, so
# binaries alternate. PATIENTS defaults to 20000 (a 104 MB file);
# JOB_DURATION (default: the server's, 2s) is passed as --job-duration; with
# `0s` the first download of each encoding also measures the file.
set -euo pipefail

PATIENTS=${PATIENTS:-20000}
ROUNDS=${ROUNDS:-2}
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY...]" >&2; exit 2; }

tmp=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# MB/s of NDJSON: plain bytes / seconds.
rate() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / t / 1e6 }'; }

measure() {
    local bin=$1
    "$bin" serve --open --patients "$PATIENTS" --resources-per-file 100000000 --port 0 \
        ${JOB_DURATION:+--job-duration "$JOB_DURATION"} --state-dir "$tmp/state" >"$tmp/serve.log" 2>&1 &
    server=$!
    local base=
    for _ in $(seq 100); do
        base=$(sed -n 's/^ *FHIR base: *//p' "$tmp/serve.log")
        [ -n "$base" ] && break
        sleep 0.1
    done
    [ -n "$base" ] || { cat "$tmp/serve.log" >&2; exit 1; }
    local status
    status=$(curl -s -D - -o /dev/null -H 'Accept: application/fhir+json' -H 'Prefer: respond-async' \
        "$base/\$export?_type=Observation" | tr -d '\r' | sed -n 's/^[Cc]ontent-[Ll]ocation: //p')
    local url=
    for _ in $(seq 600); do
        # The first file URL (`sed -n 1p` reads to the end: no SIGPIPE under pipefail).
        url=$(curl -s "$status" | sed -n 's/.*"url": *"\([^"]*\)".*/\1/p' | sed -n 1p)
        [ -n "$url" ] && break
        sleep 0.1
    done
    local plain=0 cells=()
    for enc in identity gzip; do
        for _ in first later; do
            read -r size secs < <(curl -sS -o /dev/null -H "Accept-Encoding: $enc" \
                -w '%{size_download} %{time_total}\n' "$url" || echo "curl failed: $?" >&2)
            [ "$enc" = identity ] && plain=$size
            cells+=("$(rate "$plain" "$secs")")
            [ "$enc" = gzip ] && gz=$size
        done
    done
    local rss
    kill -0 "$server" 2>/dev/null || { echo "the server stopped:" >&2; tail -5 "$tmp/serve.log" >&2; exit 1; }
    rss=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server/status")
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
    echo "| $(basename "$bin") | ${cells[0]} | ${cells[1]} | ${cells[2]} | ${cells[3]} | $plain plain, $gz gzip | $rss MB | $(cut -d' ' -f1 /proc/loadavg) |"
}

echo "| build | plain, first (MB/s) | plain, later | gzip, first (MB/s of NDJSON) | gzip, later | bytes | server peak RSS | load |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for _ in $(seq "$ROUNDS"); do
    for bin in "$@"; do
        measure "$bin"
    done
done
