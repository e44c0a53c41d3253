#!/usr/bin/env bash
# GPU figures in one short run: selection equals the CPU's, extraction and selection speed.
#   OUT=results-dir bash benchmarks/gpu.sh
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/geal-gpu}
mkdir -p "$OUT"
nvidia-smi -L
python3 -m pytest -q -p no:cacheprovider tests/unit/test_sampling.py -k "gpu" 2>&1 | tail -3
python3 benchmarks/extract_speed.py --device cuda --batch-size 128 --images 512 --repeats 5 --workers 12 > "$OUT/extract_gpu.json"
tail -n 30 "$OUT/extract_gpu.json"
python3 benchmarks/select_speed.py --device cuda > "$OUT/select_gpu.json"
tail -n 25 "$OUT/select_gpu.json"
