#!/usr/bin/env bash
# Run every libFuzzer harness of build-fuzz for <seconds> each, on a copy of
# its seed corpus (tests/fuzz/corpus/<name>), so what the fuzzer adds does
# not dirty the repository. Crash reproducers are written to
# build-fuzz/artifacts/<name>/. Exits non-zero if any harness fails.
#   tests/fuzz/run.sh SECONDS [BUILD_DIR] [NAME...]
set -uo pipefail

seconds=${1:-60}
build=${2:-build-fuzz}
shift 2 2>/dev/null || shift $#
root=$(cd "$(dirname "$0")/../.." && pwd)
names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
  for d in "$root"/tests/fuzz/corpus/*/; do names+=("$(basename "$d")"); done
fi

work=$(mktemp -d /tmp/sluice-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=()
for n in "${names[@]}"; do
  bin="$build/fuzz_$n"
  [[ -x "$bin" ]] || { echo "fuzz: $bin is missing" >&2; failed+=("$n"); continue; }
  mkdir -p "$work/$n" "$build/artifacts/$n"
  cp "$root/tests/fuzz/corpus/$n"/* "$work/$n"/
  log="$build/artifacts/$n/fuzz.log"
  # -rss_limit_mb: ASan's shadow counts; -timeout: one input may take 10 s.
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$n/" "$work/$n" >"$log" 2>&1
  rc=$?
  stats=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  printf 'fuzz %-11s %s  execs=%s  %s\n' "$n" "$([[ $rc -eq 0 ]] && echo ok || echo FAIL)" \
    "${execs:-?}" "$(sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [0-9]+\/[0-9a-zA-Z]+).*/\1/' <<<"$stats")"
  if [[ $rc -ne 0 ]]; then
    failed+=("$n")
    # CI keeps only this output: what the harness or a library said just
    # before the crash, the report's first lines, and the input in base64
    # (libFuzzer prints it for small inputs: base64 -d > crash, then run
    # build-fuzz/fuzz_<name> crash).
    grep -B3 -m1 -E '^==[0-9]+==.*ERROR|runtime error' "$log" | sed 's/^/    /' | head -6
    grep -E 'SUMMARY|^Base64:|Test unit written' "$log" | sed 's/^/    /' | head -4
    echo "    log: $log"
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
