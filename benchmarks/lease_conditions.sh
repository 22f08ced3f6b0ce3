#!/usr/bin/env bash
# Measure some conditions of a benchmark preset inside one short GPU lease: for each
# condition one `cryodiff benchmark` process per part of PARTS starts at once, each in a
# session of its own (setsid), each into OUT/<map>_<snr>/<part>/:
#   sr3    SR3 (+ the paper's post-processor) and sr3-pm, one chain (SR3, then sr3-pm's draws
#          and post-processor), one CPU thread;
#   sup2x  the supervised U-Net trained for twice the preset's steps (supervised-2x, then
#          its SSIM stage: supervised-2x-ssim), one CPU thread;
#   peers  the untrained peers that run on the CPU (low-pass, Wiener, BM3D, CWF both fits),
#          PEER_THREADS threads;
#   n2n    Noise2Noise (PARTS must name it), one CPU thread;
#   sup    the small supervised U-Net, L2 and L1 (PARTS must name it), one CPU thread;
#   large  the SR3-sized supervised U-Net (PARTS must name it), one CPU thread.
#   sr3v   SR3 trained to predict v instead of ε, and its sr3-pm (rows sr3v…; PARTS must
#          name it), one CPU thread.
#   x0ft   as sr3v, and the v SR3's x̂₀ fine-tuned (sr3v-x0ft_1, then sr3v-x0ft-ssim_1's
#          SSIM stage on top) after its sr3-pm (PARTS must name it, never with sr3v: its
#          sr3v rows are sr3v's, and two folders of the same seeds holding them do not
#          combine), one CPU thread.
#   large2x  the SR3-sized supervised U-Net trained for twice the steps
#          (supervised-large-2x, x0ft's equal-size, equal-budget peer, and its SSIM stage
#          supervised-large-2x-ssim; PARTS must name it), one CPU thread.
#   joint  one v-network of SR3's size trained for twice the steps with a share of every
#          batch on its one-pass readout (sr3v-joint_1, then sr3v-joint-ssim_1's SSIM
#          stage; PARTS must name it), one CPU thread.
# PARTS (default "sr3 sup2x peers") chooses which of them start for every condition, each
# at most once (checked, with DEADLINE_S and POLL_S, before anything starts, also under
# START=0, which starts nothing).
# They share the particles (the same simulation seed), so `cryodiff combine-results` merges
# the folders of a condition into one column and pairs their rows image by image.
#
#   bash benchmarks/lease_conditions.sh PRESET DEVICE OUT DEADLINE_S "MAP SNR" ["MAP SNR" ...]
#   e.g. bash benchmarks/lease_conditions.sh cpu-small cuda runs/lease 570 "phantom 0.01" \
#            "data/ribosome70S/ribosome70S_65.mrc 0.1"
#
# The script waits until every process has ended or DEADLINE_S seconds have passed, then
# packs OUT's results and logs (not the trained networks) into PACK (default
# OUT/results.tgz) and returns; processes still running keep going (run it again with
# START=0 to wait for them and pack again; a process id reused meanwhile by another process
# keeps that wait going until the deadline; the wait checks every POLL_S seconds, default
# 5). A map other than the phantom is read at PIXEL_SIZE Å (default 2.0). TRAINING_SEEDS
# (default "0") are the seeds of every learnt method; a later lease with other seeds (e.g.
# TRAINING_SEEDS=1, learnt parts only) merges with this one's rows in `cryodiff
# combine-results` into one row per method over all the seeds. EXTRA adds arguments to
# every benchmark (e.g. "--train-steps 20" for a rehearsal).
# The processes share one GPU by time slices: on an H100, four `cpu-small` conditions at
# once (eight GPU processes) made SR3's training 2.3x and supervised-2x over 3x slower than
# one condition alone; two conditions at a time is the better use of a short lease.
set -euo pipefail -o noglob
preset=$1 device=$2 out=$3 deadline=$4; shift 4
pixel=${PIXEL_SIZE:-2.0} seeds=${TRAINING_SEEDS:-0} peer_threads=${PEER_THREADS:-4}
pack=${PACK:-$out/results.tgz} parts=${PARTS:-sr3 sup2x peers} poll=${POLL_S:-5}
refuse() { echo "lease_conditions.sh: $*" >&2; exit 2; }
[[ $deadline =~ ^[0-9]+$ ]] || refuse "DEADLINE_S must be whole seconds, got '$deadline'"
[[ $poll =~ ^[0-9]+(\.[0-9]+)?$ ]] || refuse "POLL_S must be a number of seconds, got '$poll'"
known="sr3 sup2x peers n2n sup large sr3v x0ft large2x joint" seen=" "
for p in $parts; do
  [[ " $known " == *" $p "* ]] || refuse "PARTS: unknown part '$p' ($known)"
  [[ $seen == *" $p "* ]] && refuse "PARTS: part '$p' named twice"
  seen+="$p "
done
[ "$seen" != " " ] || refuse "PARTS names no part ($known)"
[[ $seen == *" sr3v "* && $seen == *" x0ft "* ]] && \
  refuse "PARTS: x0ft runs sr3v's rows too; name one of them"
mkdir -p "$out"

part() {  # FOLDER THREADS ARG...: one benchmark in a session of its own
  local folder=$1 n=$2; shift 2
  mkdir -p "$folder"
  # shellcheck disable=SC2086  # $seeds and $EXTRA are lists of words
  OMP_NUM_THREADS=$n MKL_NUM_THREADS=$n setsid -w python3 -m cryodiff benchmark \
    --preset "$preset" --device "$device" --training-seeds $seeds --no-pose-search \
    --no-progress --threads "$n" ${EXTRA:-} "$@" --out "$folder" \
    > "$folder/benchmark.log" 2>&1 < /dev/null &
  echo "$!" >> "$out/pids"
}

if [ "${START:-1}" = 1 ]; then
  : > "$out/pids"
  for condition in "$@"; do
    read -r map snr <<< "$condition"
    name=$(basename "$map" .mrc)_$snr
    extra=(--map "$map" --snr "$snr"); [ "$map" != phantom ] && extra+=(--pixel-size "$pixel")
    for p in $parts; do
      case $p in
        sr3) part "$out/$name/sr3" 1 "${extra[@]}" --only sr3 sr3-pm ;;
        sup2x) part "$out/$name/sup2x" 1 "${extra[@]}" --only supervised-2x supervised-2x-ssim ;;
        peers) part "$out/$name/peers" "$peer_threads" "${extra[@]}" \
                 --only lowpass wiener bm3d cwf cwf-2d ;;
        n2n) part "$out/$name/n2n" 1 "${extra[@]}" --only noise2noise ;;
        sup) part "$out/$name/sup" 1 "${extra[@]}" --only supervised supervised-l1 ;;
        large) part "$out/$name/large" 1 "${extra[@]}" --only supervised-large ;;
        sr3v) part "$out/$name/sr3v" 1 "${extra[@]}" --sr3-prediction v --only sr3 sr3-pm ;;
        x0ft) part "$out/$name/x0ft" 1 "${extra[@]}" --sr3-prediction v \
                --only sr3 sr3-pm sr3-x0ft sr3-x0ft-ssim ;;
        large2x) part "$out/$name/large2x" 1 "${extra[@]}" \
                   --only supervised-large-2x supervised-large-2x-ssim ;;
        joint) part "$out/$name/joint" 1 "${extra[@]}" --only sr3-joint ;;
      esac
    done
  done
fi

start=$SECONDS running=0
while [ $((SECONDS - start)) -lt "$deadline" ]; do
  running=0
  while read -r pid; do
    if kill -0 "$pid" 2> /dev/null; then running=$((running + 1)); fi
  done < "$out/pids"
  [ "$running" = 0 ] && break
  sleep "$poll"
done
echo "after $((SECONDS - start)) s: $running of $(wc -l < "$out/pids") still running"
# Runs still going may change files while they are packed: tar then warns and returns 1,
# which is not a failure here (run again with START=0 for the finished files).
status=0
tar czf "$pack" --warning=no-file-changed --exclude='./*/*/work' --exclude=./results.tgz \
  --exclude=./pids -C "$out" . || status=$?
[ "$status" -le 1 ] || exit "$status"
