#!/usr/bin/env bash
# One-call GPU benchmark: the backbone and SRA-CL benchmarks plus a short real SRA-CL training on one GPU, with
# every result as JSON under one folder.
#
#   bash bench/gpu.sh prepare        # here, once: cp312 wheels and Beauty's interactions into .gpu/ (gitignored)
#   bash bench/gpu.sh run            # on the GPU machine: writes $OUT (or bench/results/gpu) in about 6 minutes
#   bash bench/gpu.sh dry DIR        # any CPU: the same steps on the synthetic data, a few steps each, into DIR
#
# The GPU machine's image has torch, lightning, torchmetrics and transformers but not polars, faiss-cpu or
# jsonargparse, and nothing there reaches the internet: `prepare` downloads their Python 3.12 wheels (polars 1.20,
# the last release in one wheel, small enough for the 64 MiB a call may carry), and `run` installs them into
# .gpu/site (inside the project, gitignored). The machine has no ../shared/data either, so `prepare` copies
# Beauty.txt (1 MB) into .gpu/data, and `run` builds Beauty's co-occurrence profile there (PPMI-SVD item vectors,
# faiss neighbours; seconds): the MiniLM profile's 200 MB of prefix vectors do not travel. SRA-CL is measured on that profile, which costs the same per
# step as the text profile (same neighbour counts; the vectors are narrower).
#
# Device call (the tool's `run`, carry [".gpu"]):  bash bench/gpu.sh run
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(polars==1.20.0 faiss-cpu==1.15.1 jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0)

prepare() {
    mkdir -p .gpu/wheels .gpu/data/Beauty
    local platforms=()
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
        platforms+=(--platform "$p")
    done
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .gpu/wheels "${WHEELS[@]}"
    cp ../shared/data/Beauty/Beauty.txt .gpu/data/Beauty/
    du -sh .gpu
}

# measure DATASET BENCH_DATASET SOURCE_ROOT ACCELERATOR OUTPUT_DIR [extra bench arguments...]
# (DATASET as data/semantic.py names it, BENCH_DATASET as the bench scripts do: a catalog name or "synthetic")
measure() {
    local dataset=$1 bench_dataset=$2 source_root=$3 accelerator=$4 out=$5
    shift 5
    local data_root=$out/processed
    mkdir -p "$out"
    echo "[gpu.sh] $dataset on $accelerator -> $out"
    python data/semantic.py --dataset "$dataset" --source_root "$source_root" --data_root "$data_root" \
        --profile cooccurrence --item_source cooccurrence --user_source item_mean --pool_size 20 --index flat \
        --progress false
    local common=(--dataset "$bench_dataset" --source_root "$source_root" --data_root "$data_root" --output_dir "$out"
                  --accelerator "$accelerator" "$@")
    python bench/backbone.py "${common[@]}"
    python bench/sracl.py "${common[@]}" --profile cooccurrence
    python bench/summary.py --results "$out"
}

# train DATASET_CONFIG SOURCE_ROOT DATA_ROOT ACCELERATOR OUTPUT_DIR MAX_EPOCHS [extra train arguments...]
train() {
    local config=$1 source_root=$2 data_root=$3 accelerator=$4 out=$5 epochs=$6
    shift 6
    python train.py --config "$config" --config configs/sracl/beauty.yaml \
        --data.source_root "$source_root" --data.data_root "$data_root" --data.semantic_profile cooccurrence \
        --trainer.accelerator "$accelerator" --trainer.max_epochs "$epochs" \
        --trainer.default_root_dir "$out/train" "$@" 2>&1 | tee "$out/train.log"
}

case "${1:-}" in
    prepare)
        prepare
        ;;
    run)
        out=${OUT:-bench/results/gpu}
        python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target .gpu/site .gpu/wheels/*.whl
        export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out.gpu.txt" || true
        measure beauty beauty .gpu/data gpu "$out"
        train configs/beauty.yaml .gpu/data "$out/processed" gpu "$out" 3 --trainer.precision bf16-mixed
        ;;
    dry)
        out=${2:?usage: bash bench/gpu.sh dry OUTPUT_DIR}
        [ -f data/raw/synthetic/reviews_Synthetic_5.json.gz ] || python data/synthetic.py
        synthetic=data/raw/synthetic/reviews_Synthetic_5.json.gz
        measure "$synthetic" synthetic ../shared/data cpu "$out" --precisions 32-true --warmup 1 --steps 2
        train configs/default.yaml ../shared/data "$out/processed" cpu "$out" 1 \
            --data.dataset "$synthetic" --trainer.limit_train_batches 3 --trainer.limit_val_batches 2
        ;;
    *)
        echo "usage: bash bench/gpu.sh prepare | run | dry OUTPUT_DIR" >&2
        exit 2
        ;;
esac
