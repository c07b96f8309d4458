#!/usr/bin/env bash
# Pass-through CNI plugin that records each call. Installed in a CNI bin dir as a two-line wrapper named like
# the real plugin:   REC_REAL=/path/to/real REC_LOG=/path/calls.jsonl . /path/to/cni-recorder.sh
# It runs the real plugin with the same env, args and stdin, then appends one JSON line
# {plugin, env: {CNI_*}, stdin, stdout, rc, ms} to REC_LOG (under flock: plugins may run concurrently),
# and answers exactly what the real plugin answered. Needs jq.
set -u
rec_tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$rec_tmp"' EXIT
cat > "$rec_tmp/in"
rec_start=${EPOCHREALTIME/./}
"$REC_REAL" "$@" < "$rec_tmp/in" > "$rec_tmp/out"
rec_rc=$?
rec_ms=$(( (${EPOCHREALTIME/./} - rec_start) / 1000 ))
env | grep -E '^CNI_' | jq -R 'capture("^(?<k>[^=]*)=(?<v>.*)$")' | jq -s 'map({(.k): .v}) | add // {}' > "$rec_tmp/env"
jq -cn --arg plugin "$(basename "$0")" --slurpfile env "$rec_tmp/env" --rawfile stdin "$rec_tmp/in" \
  --rawfile stdout "$rec_tmp/out" --argjson rc "$rec_rc" --argjson ms "$rec_ms" \
  '{plugin: $plugin, env: $env[0], stdin: $stdin, stdout: $stdout, rc: $rc, ms: $ms}' > "$rec_tmp/line"
(flock 9; cat "$rec_tmp/line" >&9) 9>>"$REC_LOG"
cat "$rec_tmp/out"
exit "$rec_rc"
