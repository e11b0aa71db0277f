#!/usr/bin/env bash
# The full-profile runs on one offline GPU machine: benchmarks first, then chapters, each result saved as it lands.
#
#   benchmarks/gpu_full_profile.sh RESULTS_DIR [STEP ...]     (steps: bench_sih 04 01 bench_sih_compile 02 ...)
#
# Expects the notebook stack and data as ../shared/gpu/README.md sets them up (`. .gpu/install.sh`,
# FAIRLAB_DATA). Each notebook is executed in place with --allow-errors (a failed check is saved, not lost) and
# copied to RESULTS_DIR with its log; RESULTS_DIR/DONE marks the end.
set -uo pipefail
results=${1:?results folder}; shift
mkdir -p "$results"
export FAIRLAB_PROFILE=full FAIRLAB_PROGRESS=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$results/device.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" >> "$results/device.txt"
for step in "$@"; do
  start=$(date +%s)
  case $step in
    bench_sih) python3 benchmarks/bench_sih.py --methods sih lff vanilla ;;
    bench_sih_compile) python3 benchmarks/bench_sih.py --compile ;;
    bench_sih_table) python3 benchmarks/bench_sih.py --table ;;
    bench_null_sampling) python3 benchmarks/bench_null_sampling.py ;;
    bench_fls) python3 benchmarks/bench_fls.py ;;
    [0-9][0-9]) nb=$(ls notebooks/${step}_*.ipynb) && python3 notebooks/execute.py --allow-errors "$nb" \
                  && cp "$nb" "$results/" ;;
    *) echo "unknown step $step" ;;
  esac > "$results/$step.log" 2>&1
  echo "$step: exit $? after $(( $(date +%s) - start )) s" | tee -a "$results/steps.txt"
done
touch "$results/DONE"
