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
# classifier and the steps after it), with the speed settings ns_timing found fastest: eager float32 NCHW (the full
# profile's setting), the step captured as one CUDA graph, that with bf16 autocast in NHWC, or that with each flow
# layer compiled too (its run is given 45 s: compiling takes the first epoch; its rate is the epochs after it).
#
# A first call on a leased machine (data copied into the ignored .gpu/data, as ../shared/gpu/README.md shows):
#
#   export FAIRLAB_DATA=$PWD/.gpu/data PYTHONPATH=$PWD MPLBACKEND=Agg GPU_DEADLINE=540
#   bash benchmarks/gpu_full_profile.sh $OUT ns_timing bench_null_sampling
#
# ns_timing is four short runs (about 40 s each, 75 s for the compiling one, from the earlier two-run timing's 87 s);
# the cFlow then trains for what is left, and its downstream classifier takes about 40 s of GPU_RESERVE.
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

# the bench_null_sampling options of ns_timing's fastest run (by its steady rate); a variant that failed logged no
# result and is not a candidate; nothing logged: the profile's own settings
fastest_options() {
  python3 - "$results/ns_timing.log" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
if rows:
    best = max(rows, key=lambda row: row["steady_steps_per_second"])
    layout = {True: "--channels-last on", False: "--channels-last off", None: ""}[best["channels_last"]]
    print("--cuda-graph", "on" if best["cuda_graph"] else "off", layout, "--bf16" if best["bf16"] else "",
          "--compile" if best["compile"] else "")
EOF
}

for step in "$@"; do
  if (( $(left) < 60 )); then
    echo "$step: skipped, $(left) s left" | tee -a "$results/steps.txt"; continue
  fi
  start=$(date +%s)
  case $step in
    ns_timing) for variant in "--cuda-graph off" "--cuda-graph on" "--cuda-graph on --bf16 --channels-last on" \
                          "--cuda-graph on --bf16 --channels-last on --compile --max-seconds 45"; do
                 # the compiling variant's own --max-seconds comes after the default one, so it wins
                 # shellcheck disable=SC2086
                 bounded python3 benchmarks/bench_null_sampling.py --max-seconds 20 --downstream-epochs 0 $variant
               done ;;
    bench_null_sampling)
      fastest=""; [ -f "$results/ns_timing.log" ] && fastest=$(fastest_options)
      budget=$(( $(left) - reserve ))
      # shellcheck disable=SC2086
      if (( budget < 30 )); then
        echo "no time left to train: $(left) s left, GPU_RESERVE=$reserve"; false
      elif (( deadline < 1000000 )); then
        bounded python3 benchmarks/bench_null_sampling.py --max-seconds "$budget" $fastest
      else
        python3 benchmarks/bench_null_sampling.py $fastest
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
