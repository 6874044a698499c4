#!/usr/bin/env bash
# The MPI tests against every tested line of the PyPI `mpich` wheel, one virtual
# environment per version (build/mpi-versions/mpich-VERSION, reused when present):
#
#   benchmarks/mpi_versions.sh [--soak N] [VERSION ...]      (default: 4.3.2 5.0.2)
#
# Each environment gets the package (editable) with its test extras and exactly that
# mpich (pip refuses a version outside the range setup.cfg declares), then runs, niced,
# the MPI tests: tests/test_parallel.py, tests/test_wasap_traffic.py (which run the
# scenarios of tests/mpi_scenarios.py) and tests/test_mpi_versions.py. With --soak N,
# benchmarks/soak_mpi.py injects N faults per version as well (about 5 s a fault on 2
# cores; table in benchmarks/results/soak_mpi_mpich-VERSION.md).
# The summary goes to benchmarks/results/mpi_versions.md, each pytest log to
# build/mpi-versions/mpich-VERSION.log. Exit status 1 if any run failed. MPI_TESTS (a
# space-separated list of test files or node ids) replaces the default tests.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SOAK=0
if [ "${1:-}" = "--soak" ]; then
    SOAK=$2
    shift 2
fi
VERSIONS=${*:-4.3.2 5.0.2}
TESTS=${MPI_TESTS:-tests/test_parallel.py tests/test_wasap_traffic.py tests/test_mpi_versions.py}
OUT=benchmarks/results/mpi_versions.md
mkdir -p build/mpi-versions
status=0
rows=""
for v in $VERSIONS; do
    venv=build/mpi-versions/mpich-$v
    log=$venv.log
    echo "== mpich $v: $venv"
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv" || exit 1
    if ! "$venv/bin/pip" install -q -e ".[test]" "mpich==$v" > "$log" 2>&1; then
        rows="$rows| $v | - | - | pip install failed (see $log) | - | - |\n"
        status=1
        continue
    fi
    mpi4py=$("$venv/bin/python" -c "from importlib.metadata import version; print(version('mpi4py'))")
    device=$("$venv/bin/mpichversion" | sed -n 's/^MPICH Device: *//p' | head -1)
    ucx=$(grep -ao 'ucx-[0-9][0-9.]*[0-9]' "$venv/lib/mpich/libucp.so.0" 2>/dev/null | head -1)
    t0=$(date +%s)
    nice -n 19 "$venv/bin/python" -m pytest -q -p no:cacheprovider $TESTS >> "$log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || status=1
    summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|^[0-9]+ (passed|failed|error)' "$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
    soak="-"
    if [ "$SOAK" -gt 0 ]; then
        if nice -n 19 "$venv/bin/python" benchmarks/soak_mpi.py --faults "$SOAK" --seed 1 \
                --timeout 150 --python "$venv/bin/python" \
                --out "benchmarks/results/soak_mpi_mpich-$v.md" >> "$log" 2>&1; then
            soak="clean (benchmarks/results/soak_mpi_mpich-$v.md)"
        else
            soak="FAILURES (benchmarks/results/soak_mpi_mpich-$v.md)"
            status=1
        fi
    fi
    rows="$rows| $v | $mpi4py | $device, ${ucx:-no UCX} | $summary | $(( $(date +%s) - t0 )) s | $soak |\n"
    echo "   $summary"
done
{
    echo "MPI tests per mpich line (benchmarks/mpi_versions.sh), $(date -u '+%Y-%m-%d %H:%M UTC'),"
    echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; tests: $TESTS."
    echo
    echo "| mpich | mpi4py | device, bundled UCX | MPI tests | time | soak |"
    echo "|---|---|---|---|---|---|"
    printf "%b" "$rows"
} > "$OUT"
cat "$OUT"
exit $status
