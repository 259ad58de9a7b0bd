#!/usr/bin/env bash
# GPU readiness: the CUDA tests (pytest -m cuda) and a short benchmark (bench/gpu_check.py: the dashboard's
# default grid, strong vs AutoAttack's time, one ResNet-50 unit), written as one markdown table. Under
# 8 minutes on one H100: the tests get at most 4 minutes, the benchmark at most 5.5 (it writes its table
# after every row, so a time limit keeps what was measured).
#
#   scripts/gpu_check.sh              # on a machine with a GPU
#   scripts/gpu_check.sh --cpu-smoke  # anywhere: the same steps on the CPU at tiny sizes (the CUDA tests skip)
#
# Output: $OUT/gpu_check.md and .json (bench/out/ when OUT is unset), the tests' log beside them.
# Exit status: 0 when every test passed (or skipped) and every benchmark row ran; 2 without a GPU
# (unless --cpu-smoke); 1 otherwise. Python: $PYTHON, else .venv/bin/python, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=cuda
case "${1:-}" in
  --cpu-smoke) mode=cpu ;;
  "") ;;
  *) echo "usage: $0 [--cpu-smoke]" >&2; exit 2 ;;
esac
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
dest="${OUT:-bench/out}"
mkdir -p "$dest"

if [ "$mode" = cuda ] && ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: torch sees no CUDA device here; run it on a GPU machine, or with --cpu-smoke to check the" \
       "script on the CPU" >&2
  exit 2
fi

RTCORE_CACHE_DIR="$(mktemp -d)"  # a cold, private cache for the tests; the benchmark makes its own per row
export RTCORE_CACHE_DIR
trap 'rm -rf "$RTCORE_CACHE_DIR"' EXIT

log="$dest/gpu_check_tests.log"
timeout 240 "$py" -m pytest -q -m cuda tests/unit/test_cuda.py -p no:cacheprovider >"$log" 2>&1
tests_rc=$?
summary="$(tail -n 1 "$log") (exit $tests_rc)"
echo "CUDA tests: $summary"

smoke=()
[ "$mode" = cpu ] && smoke=(--smoke)
timeout 330 "$py" -m bench.gpu_check --device "$mode" "${smoke[@]}" --out "$dest" --tests "$summary"
bench_rc=$?
[ "$bench_rc" -eq 124 ] && echo "gpu_check: the benchmark ran past its 330 s; $dest/gpu_check.md has the rows it finished" >&2

echo "table: $dest/gpu_check.md"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && exit 0
exit 1
