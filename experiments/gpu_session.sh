#!/usr/bin/env bash
# Everything a GPU session runs, as one command on a bare GPU machine whose image has torch, numpy, pandas,
# scikit-learn, safetensors and accelerate but not fastai & co. or spaCy. Prepare the payload on a CPU machine
# first (wheels + portable token files, checked to fit the 64 MiB a call carries):
#     python -m experiments.gpu_payload --out .gpu
# then run, from the repository root on the GPU machine (what comes back is written under $OUT):
#     bash experiments/gpu_session.sh [checks|bench|imdb|all]...      # default: all, in that order
# A call carries at most 64 MiB with the working tree, so a session makes one call per part group, e.g. with the
# device tool: run("bash experiments/gpu_session.sh checks bench", carry=[".gpu/wheels",
# ".gpu/corpora/wikitext2.tokens", ".gpu/corpora/imdb.tokens"]), then run("bash experiments/gpu_session.sh imdb",
# carry=[".gpu/wheels", ".gpu/corpora/imdb.tokens", ".gpu/corpora/wiki-gutenberg-5m.tokens"]).
# checks: tests/gpu_checks.py; bench: python -m bench --gpu; imdb: python -m experiments.imdb_gpu.
# Each part has its own time limit, so one overrun part still leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ulmfit-gpu-out}
PAYLOAD=${PAYLOAD:-.gpu}
mkdir -p "$OUT"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(all)
[ "${parts[*]}" = all ] && parts=(checks bench imdb)

log() { echo "[gpu_session $(date +%H:%M:%S)] $*" | tee -a "$OUT/session.log"; }

[ -d "$PAYLOAD/wheels" ] || { echo "no $PAYLOAD/wheels: run python -m experiments.gpu_payload --out $PAYLOAD first" >&2; exit 2; }
log "install the carried wheels"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ulmfit-site \
    "$PAYLOAD"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/ulmfit-site:$PWD PYTHONUNBUFFERED=1 ULMFIT_HOME=${ULMFIT_HOME:-/tmp/ulmfit-home}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/session.log"

run_checks() {
    timeout 240 python3 -m tests.gpu_checks --tokens "$PAYLOAD/corpora/wikitext2.tokens" 2>&1 | tee -a "$OUT/session.log"
    return "${PIPESTATUS[0]}"
}
run_bench() {
    timeout 360 python3 -m bench --gpu --tokens "$PAYLOAD/corpora" --profile --out "$OUT" 2>&1 | tail -n 60 \
        | tee -a "$OUT/session.log"
    return "${PIPESTATUS[0]}"
}
run_imdb() {
    timeout 570 python3 -m experiments.imdb_gpu --home "$ULMFIT_HOME" --tokens "$PAYLOAD/corpora" 2>&1 \
        | tail -n 40 | tee -a "$OUT/session.log"
    local rc=${PIPESTATUS[0]}
    cp experiments/results/imdb_gpu.md experiments/results/imdb_gpu.csv "$OUT"/ 2>/dev/null
    cp "$ULMFIT_HOME"/imdb-gpu-*.log "$OUT/imdb_gpu.log" 2>/dev/null
    return "$rc"
}

status=0
for part in "${parts[@]}"; do
    case $part in checks|bench|imdb) ;; *) echo "unknown part $part (checks, bench, imdb, all)" >&2; exit 2 ;; esac
    t0=$(date +%s)
    log "$part"
    "run_$part"
    rc=$?
    log "$part: exit $rc after $(( $(date +%s) - t0 )) s"
    [ "$rc" -eq 0 ] || status=1
done
exit $status
