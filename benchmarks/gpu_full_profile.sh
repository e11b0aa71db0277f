#!/usr/bin/env bash
# The full-profile runs on one offline GPU machine: benchmarks first, then chapters, each result saved as it lands.
#
#   benchmarks/gpu_full_profile.sh RESULTS_DIR [STEP ...]     (steps: ns_timing bench_null_sampling profile_cflow 04 ...)
#
# Expects the data (FAIRLAB_DATA) and, for the chapters, the notebook stack as ../shared/gpu/README.md sets them up
# (`. .gpu/install.sh`). Each notebook is executed in place with --allow-errors (a failed check is saved, not lost)
# and copied to RESULTS_DIR with its log; RESULTS_DIR/DONE marks the end.
#
# GPU_DEADLINE (seconds from the start, default: none) bounds the whole script on a leased machine: every step runs
# under `timeout` with what is left, a step that would start with under a minute left is skipped, and
# bench_null_sampling trains the cFlow for what is left minus GPU_RESERVE seconds (default 150: its downstream
# classifier and the steps after it), with cuDNN's algorithm search on or off as ns_timing found faster.
set -uo pipefail
results=${1:?results folder}; shift
mkdir -p "$results"
export FAIRLAB_PROFILE=full FAIRLAB_PROGRESS=0 PYTHONUNBUFFERED=1
began=$(date +%s)
deadline=${GPU_DEADLINE:-1000000}
reserve=${GPU_RESERVE:-150}
left() { echo $(( deadline - ($(date +%s) - began) )); }
# run a command for at most what is left of the deadline
bounded() { local t; t=$(left); (( t > 0 )) || return 124; timeout "$t" "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$results/device.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" >> "$results/device.txt"

# ns_timing's faster cuDNN setting ("on" or "off"), from the steady rates it logged
faster_cudnn() {
  python3 - "$results/ns_timing.log" <<'EOF'
import json, sys
rates = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        row = json.loads(line)
        rates["on" if row["cudnn_benchmark"] else "off"] = row["steady_steps_per_second"]
print(max(rates, key=rates.get) if rates else "off")
EOF
}

for step in "$@"; do
  if (( $(left) < 60 )); then
    echo "$step: skipped, $(left) s left" | tee -a "$results/steps.txt"; continue
  fi
  start=$(date +%s)
  case $step in
    ns_timing) for cudnn in off on; do
                 bounded python3 benchmarks/bench_null_sampling.py --max-seconds 20 --downstream-epochs 0 \
                   --cudnn-benchmark $cudnn
               done ;;
    bench_null_sampling)
      cudnn=off; [ -f "$results/ns_timing.log" ] && cudnn=$(faster_cudnn)
      budget=$(( $(left) - reserve ))
      if (( deadline < 1000000 )); then
        bounded python3 benchmarks/bench_null_sampling.py --max-seconds "$budget" --cudnn-benchmark $cudnn
      else
        python3 benchmarks/bench_null_sampling.py --cudnn-benchmark $cudnn
      fi ;;
    profile_sih) bounded python3 benchmarks/profile_step.py sih lff vanilla ;;
    profile_cflow) bounded python3 benchmarks/profile_step.py cflow --compile ;;
    bench_sih) bounded python3 benchmarks/bench_sih.py --methods sih lff vanilla ;;
    bench_sih_history) bounded python3 benchmarks/bench_sih.py --history ;;
    bench_sih_compile) bounded python3 benchmarks/bench_sih.py --compile ;;
    bench_sih_table) bounded python3 benchmarks/bench_sih.py --table ;;
    bench_fls) bounded python3 benchmarks/bench_fls.py ;;
    [0-9][0-9]) nb=$(ls notebooks/${step}_*.ipynb) \
                  && bounded python3 notebooks/execute.py --allow-errors "$nb" && cp "$nb" "$results/" ;;
    *) echo "unknown step $step" ;;
  esac > "$results/$step.log" 2>&1
  echo "$step: exit $? after $(( $(date +%s) - start )) s" | tee -a "$results/steps.txt"
done
touch "$results/DONE"
