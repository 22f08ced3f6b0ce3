# Session 20's lease (one NVIDIA H200): supervised-large-2x (+ its SSIM stage), seed 0, cpu-small.
# First call `bash lease.sh 545`: the four conditions below at once. Second call (the machine still warm):
# the same with W=/tmp/w2 and the conditions "phantom 0.01 ph_0.01" "$R 0.01 rib_0.01 --pixel-size 2.0".
# Run from the repository root with the wheels of mrcfile, starfile, pooch and platformdirs in .whl/.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site || exit
W=/tmp/w; T=${1:-540}
if [ ! -f $W/pids ]; then
  nvidia-smi -L; python3 -c "import torch,cryodiff;print(torch.__version__,torch.cuda.get_device_name(),cryodiff.__file__)"
  R=data/ribosome70S/ribosome70S_65.mrc; mkdir -p $W; : > $W/pids
  for c in "phantom 0.1 ph_0.1" "phantom 0.05 ph_0.05" "$R 0.1 rib_0.1 --pixel-size 2.0" "$R 0.05 rib_0.05 --pixel-size 2.0"; do set -- $c
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 setsid python3 -m cryodiff benchmark --preset cpu-small --device cuda --training-seeds 0 --no-pose-search --no-progress --threads 1 --map $1 --snr $2 $4 $5 --only supervised-large-2x supervised-large-2x-ssim --out $W/$3 > $W/$3.log 2>&1 < /dev/null & echo $! >> $W/pids
  done
  (setsid nvidia-smi dmon -s u -d 15 > $W/dmon.txt 2>&1 < /dev/null &)
fi
t0=$SECONDS; while [ $((SECONDS-t0)) -lt $T ]; do n=0; for p in $(cat $W/pids); do kill -0 $p 2>/dev/null && n=$((n+1)); done; [ $n = 0 ] && break; sleep 5; done
echo "after $((SECONDS-t0)) s: $n running"; tail -n 4 $W/*.log; ls -la $W/*/work/baselines/seed0 2>/dev/null
tar czf $OUT/slarge.tgz -C $W --exclude='*.png' --exclude=work . 
for d in $W/*/; do c=$(basename $d); [ -f $d/results.json ] || cp $d/work/baselines/seed0/*supervised-large-2x.pt $OUT/$c.pt 2>/dev/null; done; ls -la $OUT
