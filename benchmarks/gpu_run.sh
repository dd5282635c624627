#!/usr/bin/env bash
# The fit benchmarks on a GPU machine (H100/H200, 16 cores, no network), in about 6 minutes.
#
# Here, before (needs this repo's .venv; the network only for the optional optree wheel):
#     benchmarks/gpu_run.sh pack [OLD_COMMIT]
#   copies Keras and namex (pure Python) from the venv into .gpu_site/python, downloads optree's
#   cp312 wheel into .gpu_site/wheels (Keras needs optree on JAX; on torch it does without), and with
#   OLD_COMMIT puts that commit's keras_logits in .gpu_site/old for a before/after pair. .gpu_site is
#   git-ignored: carry it (device tool: carry [".gpu_site"]).
# There, from the repo root:
#     benchmarks/gpu_run.sh [OUT_DIR]        (default: $OUT, else benchmarks/results/gpu_run)
#   installs nothing system-wide: the optree wheel goes into /tmp/gpu_site with pip --no-index; says
#   which backends see a GPU (honestly "CPU only" if none does), then runs, on the first backend that
#   sees a GPU (jax, else torch, else tensorflow; on the CPU if none does), the digits rows
#   (fit_overhead) and the realistic workload (realistic_fit: MobileNetV2 32x32, 10240 samples per
#   epoch), for this checkout and, if packed, the old one. Each step has a time limit; the JSON
#   files, the log and the summary table land in OUT_DIR. GPU_RUN_QUICK=1 runs every step with --quick
#   (proves the script works, in a minute or two, anywhere).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
SITE=$ROOT/.gpu_site

pack() {
    local venv_python=${VENV_PYTHON:-$ROOT/.venv/bin/python}
    [ -x "$venv_python" ] || venv_python=/work/main/.venv/bin/python
    local packages
    # Found, not imported: importing Keras would start TensorFlow.
    packages=$("$venv_python" -c "import importlib.util as u, os; print(os.path.dirname(os.path.dirname(
        u.find_spec('keras').origin)))") || exit 1
    rm -rf "$SITE" && mkdir -p "$SITE/python" "$SITE/wheels"
    for package in keras namex; do
        # Tests and byte code are left behind: they are two thirds of Keras' size.
        (cd "$packages" && find "$package" -type f -name '*.py' ! -name '*_test.py' -print0 |
            xargs -0 cp --parents -t "$SITE/python") || exit 1
    done
    if ! "$venv_python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d "$SITE/wheels" "optree==$("$venv_python" -c 'import importlib.metadata as m; print(m.version("optree"))')"; then
        echo "no optree wheel (no network?): on the GPU machine Keras will run on torch only, not JAX"
    fi
    if [ -n "${1:-}" ]; then
        mkdir -p "$SITE/old" && git archive "$1" keras_logits | tar -x -C "$SITE/old" || exit 1
        echo "$1" > "$SITE/old/COMMIT"
    fi
    du -sh "$SITE"
    echo "packed $SITE: carry .gpu_site, then run benchmarks/gpu_run.sh there"
}

if [ "${1:-}" = pack ]; then
    shift
    pack "$@"
    exit
fi

OUT_DIR=${1:-${OUT:-$ROOT/benchmarks/results/gpu_run}}
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/gpu_run.log
exec > >(tee "$LOG") 2>&1
PYTHON=${PYTHON:-python3}
START=$SECONDS
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1
# A second process compiling the same train steps (the old checkout) reads them from this cache.
export JAX_COMPILATION_CACHE_DIR=/tmp/keras_logits_jax_cache

if [ -d "$SITE/wheels" ] && ls "$SITE"/wheels/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_site "$SITE"/wheels/*.whl \
        || echo "could not install the carried wheels"
fi
EXTRA=/tmp/gpu_site
[ -d "$SITE/python" ] && EXTRA=$EXTRA:$SITE/python

echo "== machine"
date -u
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: none"
"$PYTHON" -V
nproc

# Which backends can run Keras here, and on what device: a Keras backend needs Keras importable with it.
probe() {  # probe BACKEND -> prints "gpu", "cpu" or "unavailable: why"
    KERAS_BACKEND=$1 PYTHONPATH=$ROOT:$EXTRA timeout 120 "$PYTHON" - <<'EOF' 2>/dev/null | tail -1
import os
backend = os.environ["KERAS_BACKEND"]
try:
    if backend == "jax":
        import jax
        device = jax.devices()[0].platform
    elif backend == "torch":
        import torch
        device = "gpu" if torch.cuda.is_available() else "cpu"
    else:
        import tensorflow as tf
        device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
except Exception as error:
    print(f"unavailable: {backend} not importable ({type(error).__name__}: {error})")
    raise SystemExit
try:
    import keras
except Exception as error:
    print(f"unavailable: keras does not import on {backend} ({type(error).__name__}: {error}); "
          "run `benchmarks/gpu_run.sh pack` where pip can download, and carry .gpu_site")
    raise SystemExit
print("gpu" if device in ("gpu", "cuda") else "cpu")
EOF
}

echo "== backends"
CHOSEN="" DEVICE=""
for backend in jax torch tensorflow; do
    found=$(probe $backend)
    echo "$backend: ${found:-unavailable: the probe printed nothing}"
    if [ "$found" = gpu ] && [ -z "$DEVICE" ]; then CHOSEN=$backend DEVICE=gpu; fi
    if [ "$found" = cpu ] && [ -z "$CHOSEN" ]; then CHOSEN=$backend; fi
done
if [ -z "$CHOSEN" ]; then
    echo "no backend can run Keras here: nothing measured"
    exit 1
fi
if [ "$DEVICE" = gpu ]; then
    echo "measuring on the GPU with $CHOSEN"
    REALISTIC="--model mobilenetv2 --samples 10240 --rounds 4"
else
    echo "CPU only: no backend sees a GPU; measuring on the CPU with $CHOSEN (not GPU figures)"
    REALISTIC="--rounds 3"
fi

CHECKOUTS="new:$ROOT"
[ -d "$SITE/old/keras_logits" ] && CHECKOUTS="$CHECKOUTS old:$SITE/old"
step() {  # step LIMIT NAME CHECKOUT MODULE ARGS...
    local limit=$1 name=$2 checkout=$3 module=$4
    shift 4
    echo "== $name ($(( SECONDS - START )) s elapsed; limit ${limit} s)"
    KERAS_BACKEND=$CHOSEN PYTHONPATH=$checkout:$ROOT:$EXTRA timeout "$limit" "$PYTHON" -m "benchmarks.$module" \
        --json "$OUT_DIR/$name.json" "$@" ${GPU_RUN_QUICK:+--quick} 2>&1 | grep -v -e '^round ' -e 'rebuild TensorFlow' -e '^WARNING: All log'
    local status=${PIPESTATUS[0]}
    [ "$status" = 0 ] || echo "$name: did not finish (exit $status; 124 = over its time limit)"
}
for pair in $CHECKOUTS; do
    step 90 "${CHOSEN}_${pair%%:*}_digits" "${pair#*:}" fit_overhead --rounds 20
done
for pair in $CHECKOUTS; do
    step 120 "${CHOSEN}_${pair%%:*}_realistic" "${pair#*:}" realistic_fit $REALISTIC
done
echo "== summary ($(( SECONDS - START )) s)"
PYTHONPATH=$ROOT "$PYTHON" -m benchmarks.compare_fits "$OUT_DIR"/*.json
