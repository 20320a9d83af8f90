#!/usr/bin/env bash
# Counts the fsync/fdatasync calls of goal sessions of 1, 50 and 100 turns (the goal_session
# bench's shape: one argv `shell` call `echo N`, then a short message, per turn) with strace, and
# prints fsyncs per turn as (N100 - N50) / 50.
#
# Usage (from the repository root, after `cargo build -p quest-cli -p quest-mock-model`):
#   crates/bench/scripts/fsyncs-per-turn.sh
# QUEST_BIN and MOCK_BIN override the binaries (default: target/debug). fsync counts do not
# depend on the optimisation level. Needs strace.
set -euo pipefail
quest=$(realpath "${QUEST_BIN:-target/debug/quest}")
mock=$(realpath "${MOCK_BIN:-target/debug/quest-mock-model}")
work=$(mktemp -d)
trap 'kill "$mock_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

cat >"$work/script.toml" <<'TOML'
[[rules]]
name = "report"
when = { last_item_type = "function_call_output" }
then = { output = [{ type = "message", text = "Step {n} done; continuing." }], usage = { input_tokens = 2000, cached_tokens = 1800, output_tokens = 20 } }

[default]
output = [{ type = "function_call", name = "shell", arguments = { command = ["echo", "{n}"] } }]
usage = { input_tokens = 2000, cached_tokens = 1800, output_tokens = 20 }
TOML

"$mock" --script "$work/script.toml" --port-file "$work/port" >/dev/null 2>&1 &
mock_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")

count() {
  local turns=$1 home
  home=$(mktemp -d -p "$work")
  mkdir -p "$home/cwd"
  set +e
  (cd "$home/cwd" && QUEST_HOME="$home" BENCH_API_KEY=sk-bench NO_COLOR=1 \
    strace -f -qq -e trace=fsync,fdatasync -c -o "$home/strace.txt" \
    "$quest" exec --json --skip-git-repo-check \
    -c model_provider=bench \
    -c "model_providers.bench={name=\"bench\", base_url=\"http://127.0.0.1:$port/v1\", wire_api=\"responses\", env_key=\"BENCH_API_KEY\"}" \
    -c model=gpt-bench -c 'goals.no_progress_backoff=["1ms"]' \
    --goal "count upward, one echo per turn" --turn-budget "$turns" </dev/null >/dev/null 2>&1)
  local code=$?
  set -e
  if [ "$code" -ne 5 ]; then echo "N=$turns: expected exit 5, got $code" >&2; exit 1; fi
  awk '$NF == "fsync" || $NF == "fdatasync" { n += $4 } END { print n + 0 }' "$home/strace.txt"
}

n1=$(count 1)
n50=$(count 50)
n100=$(count 100)
echo "fsyncs: N=1 $n1, N=50 $n50, N=100 $n100"
awk -v a="$n50" -v b="$n100" 'BEGIN { printf "fsyncs per turn ((N100 - N50) / 50): %.2f\n", (b - a) / 50 }'
