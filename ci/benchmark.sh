#!/usr/bin/env bash
# A CI job's benchmark step: run an experiment, compare it with a baseline run,
# and leave what CI systems read in OUT_DIR. Exits with the comparison's code
# (0 same or better, 1 an expectation failed, a figure regressed or a label changed), or with the
# run's when it could not measure (2 bad input, 3 environment, 4 a trial failed,
# 129/130/143 stopped). docs/ci.md explains how to keep the baseline.
#
#   ci/benchmark.sh EXPERIMENT OUT_DIR [BASELINE_RUN_DIR] [harness compare options...]
#
# OUT_DIR gets: run/ (this run's directory: keep it as the next baseline),
# run.xml and compare.xml (JUnit), summary.md (for $GITHUB_STEP_SUMMARY or a
# merge-request note), and the run's own report.html inside run/.
set -uo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
experiment=$1 out=$2 baseline=${3:-}
shift $(( $# < 3 ? $# : 3 ))
harness=${HARNESS:-harness}

mkdir -p "$out" || exit 2
rm -rf "$out/run" "$out/results"
$harness run "$experiment" --quiet --results "$out/results" \
  --junit-xml "$out/run.xml" --markdown "$out/summary.md"
run_code=$?
# The run directory is the only one under results/<experiment>/.
run_dir=$(find "$out/results" -mindepth 2 -maxdepth 2 -type d | head -n 1)
[ -n "$run_dir" ] && mv "$run_dir" "$out/run" && rm -rf "$out/results"
case $run_code in 0|1) ;; *) exit "$run_code" ;; esac

if [ -z "$baseline" ]; then
  echo "no baseline given: this run is the first baseline ($out/run)" | tee -a "$out/summary.md"
  exit "$run_code"
fi
$harness compare "$baseline" "$out/run" --junit-xml "$out/compare.xml" --markdown "$out/compare.md" "$@"
compare_code=$?
cat "$out/compare.md" >> "$out/summary.md" 2>/dev/null
case $compare_code in 0|1) ;; *) exit "$compare_code" ;; esac
exit $(( run_code > compare_code ? run_code : compare_code ))
