#!/usr/bin/env bash
# CI's fuzz step (.ci/run): formatting and lints of the fuzz crate, then
# every target for FUZZ_SECONDS (default 60) from the committed seeds, on
# stable Rust without a sanitizer (`cargo fuzz ... -s none`). A crash, a
# failed invariant or an input running over 10 s fails the step; libFuzzer
# leaves the input in fuzz/artifacts/TARGET/. New corpus entries go to
# fuzz/corpus/TARGET/ (ignored by git); fuzz/seeds/ is never written.
# Inputs that once crashed a target (fuzz/regressions/TARGET/) run first.
set -Eeuo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SECONDS:-60}"
# Logs go to a directory of their own: with CARGO_TARGET_DIR set elsewhere
# (as many users have it), fuzz/target/ does not exist.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

cargo fmt --check
# In the workspace's target directory (unless the user chose one): the
# dependencies it shares with the workspace are already checked there.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../target}" cargo clippy --all-targets --locked -- -D warnings
cargo fuzz build -s none

targets=$(cargo fuzz list)
test "$(echo "$targets" | wc -l)" -ge 4
for t in $targets; do
  # Every input that once crashed this target runs once more.
  if [ -d "regressions/$t" ]; then
    echo "--- $t: past crashes"
    cargo fuzz run -s none "$t" regressions/"$t"/* -- -timeout=10 -rss_limit_mb=2048
  fi
  echo "--- $t: ${secs}s"
  mkdir -p "corpus/$t"
  log="$logs/fuzz-$t.log"
  if ! cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    grep -v -E '^#[0-9]+ ' "$log" | tail -60
    echo "fuzz target $t failed (input saved under fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE|^Done' "$log"
done
