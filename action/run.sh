#!/usr/bin/env bash
# The `bulkmock run` step of action.yml: inputs come as INPUT_* variables;
# reports go to $INPUT_RESULTS and the Markdown report to $GITHUB_STEP_SUMMARY.
# cli/tests/action.rs runs this script with the binary of the build.
set -uo pipefail

results="${INPUT_RESULTS:-bulkmock-results}"
mkdir -p "$results"
args=(run)
case "${INPUT_SUITE:-builtin}" in
  builtin) args+=(--suite builtin) ;;
  *) read -r -a paths <<< "$INPUT_SUITE"; args+=("${paths[@]}") ;;
esac
if [ -n "${INPUT_CLIENT_CMD:-}" ]; then args+=(--client-cmd "$INPUT_CLIENT_CMD"); fi
if [ -n "${INPUT_FILTER:-}" ]; then args+=(--filter "$INPUT_FILTER"); fi
if [ -n "${INPUT_SHARD:-}" ]; then args+=(--shard "$INPUT_SHARD"); fi
if [ "${INPUT_STRICT:-false}" = "true" ]; then args+=(--strict); fi
if [ -n "${INPUT_ARGS:-}" ]; then read -r -a extra <<< "$INPUT_ARGS"; args+=("${extra[@]}"); fi
args+=(--json "$results/result.json" --junit "$results/junit.xml" --markdown "$results/report.md" --html "$results/report.html")

echo "bulkmock ${args[*]}"
bulkmock "${args[@]}"
status=$?
if [ -f "$results/report.md" ] && [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  cat "$results/report.md" >> "$GITHUB_STEP_SUMMARY"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "results=$results" >> "$GITHUB_OUTPUT"; fi
exit "$status"
