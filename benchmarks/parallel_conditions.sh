#!/usr/bin/env bash
# Run every (map, SNR) condition of a benchmark preset as its own `cryodiff benchmark`
# process, all at once, each into OUT/<map>_<snr>/ with its own results.json and results.md.
#
#   bash benchmarks/parallel_conditions.sh PRESET DEVICE OUT MAP [MAP ...]
#   e.g. bash benchmarks/parallel_conditions.sh cpu-small cuda runs/cpu_small phantom \
#            ../shared/data/ribosome70S/ribosome70S_65.mrc
#
# Why: the small presets are launch-bound on a GPU (one H100 ran seven such jobs at once at
# ≈ 200 training img/s each against 229 for one alone), so the conditions finish together in
# about the time of one. Each process gets THREADS CPU threads (default 2). A map without a
# pixel size in its header is read at PIXEL_SIZE Å (default 2.0, as in docs/benchmarks.md).
set -euo pipefail
preset=$1 device=$2 out=$3; shift 3
snrs=${SNRS:-"0.1 0.05 0.01"} threads=${THREADS:-2} pixel=${PIXEL_SIZE:-2.0}
mkdir -p "$out"
for map in "$@"; do
  name=$(basename "$map" .mrc)
  extra=(); [ "$map" != phantom ] && extra=(--pixel-size "$pixel")
  for snr in $snrs; do
    OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads cryodiff benchmark --preset "$preset" \
      --map "$map" "${extra[@]}" --snr "$snr" --device "$device" --no-progress \
      --out "$out/${name}_$snr" > "$out/${name}_$snr.log" 2>&1 &
  done
done
wait
grep -h "method rows measured" "$out"/*.log || true
