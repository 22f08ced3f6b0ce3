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
#
# SPLIT=1 first trains each condition's networks (Noise2Noise, the four supervised U-Nets,
# SR3 with its post-processors: sr3+pp, sr3-mse, sr3-pm) in one-thread processes of their
# own, one per method and every training seed of the preset, into
# OUT/train_<map>_<snr>_<method>/ (no pose search), then copies them into
# OUT/<map>_<snr>/work/ and runs the full benchmark there, which reuses them instead of
# training one after the other. Their training times (`fit_seconds`) are the ones measured
# in those processes.
set -euo pipefail
preset=$1 device=$2 out=$3; shift 3
snrs=${SNRS:-"0.1 0.05 0.01"} threads=${THREADS:-2} pixel=${PIXEL_SIZE:-2.0}
mkdir -p "$out"

benchmark() {  # LOG THREADS ARG...: one benchmark process in the background
  local log=$1 n=$2; shift 2
  OMP_NUM_THREADS=$n MKL_NUM_THREADS=$n cryodiff benchmark --preset "$preset" \
    --device "$device" --no-progress "$@" > "$log" 2>&1 &
}

if [ "${SPLIT:-0}" = 1 ]; then
  for map in "$@"; do
    name=$(basename "$map" .mrc)
    extra=(); [ "$map" != phantom ] && extra=(--pixel-size "$pixel")
    for snr in $snrs; do
      for method in noise2noise supervised supervised-l1 supervised-large supervised-2x \
          "sr3 sr3-mse sr3-pm"; do
        run=$out/train_${name}_${snr}_${method%% *}
        # shellcheck disable=SC2086  # "sr3 sr3-mse sr3-pm" is three method names
        benchmark "$run.log" 1 --map "$map" "${extra[@]}" --snr "$snr" --no-pose-search \
          --only $method --out "$run"
      done
    done
  done
  wait
fi
for map in "$@"; do
  name=$(basename "$map" .mrc)
  extra=(); [ "$map" != phantom ] && extra=(--pixel-size "$pixel")
  for snr in $snrs; do
    if [ "${SPLIT:-0}" = 1 ]; then  # the networks trained above, for this run to reuse
      trained=$out/train_${name}_$snr work=$out/${name}_$snr/work
      mkdir -p "$work/baselines"
      for method in noise2noise supervised supervised-l1 supervised-large supervised-2x; do
        cp -r "${trained}_$method"/work/baselines/. "$work/baselines/"  # seed<S>/<name>.pt
      done
      cp -r "${trained}_sr3"/work/sr3_* "$work/"
    fi
    benchmark "$out/${name}_$snr.log" "$threads" --map "$map" "${extra[@]}" --snr "$snr" \
      --out "$out/${name}_$snr"
  done
done
wait
grep -h "method rows measured" "$out"/*.log || true
