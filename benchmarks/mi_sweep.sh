#!/usr/bin/env bash
# The MI-backprop search on one GPU: one mi_search.py process per (colour variance, seed, setting), all at once.
# The runs are small (launch-bound), so a GPU with many CPU cores runs a dozen side by side; `seconds` in each line
# are then wall-clock under that sharing, not a single-run speed.
#
#   benchmarks/mi_sweep.sh OUT.jsonl EPOCHS [SETTING_JSON ...]
# MI_SWEEP_LIMIT=seconds stops every run still going after that long (its line is then missing from OUT).
set -uo pipefail
out=${1:?output .jsonl}; epochs=${2:?epochs}; shift 2
settings=("$@")
if [ ${#settings[@]} -eq 0 ]; then
  released='"lr": 0.0001, "statistics_steps": 10, "fresh_statistics_batches": true, "statistics_pass_every_epoch": true'
  settings=("{\"mi_weight\": 0, \"lr\": 0.0001}"
            "{\"mi_weight\": 1, \"mi_update\": \"released\", $released}"
            "{\"mi_weight\": 1, \"mi_update\": \"combined\", $released}")
fi
tmp=$(mktemp -d)
for variance in 0.02 0.03 0.04; do
  for seed in 0 1 2; do
    for i in "${!settings[@]}"; do
      timeout "${MI_SWEEP_LIMIT:-0}" python3 benchmarks/mi_search.py "${settings[$i]}" --subsample 0 \
        --test-subsample 0 --epochs "$epochs" --colour-variances "$variance" --seeds "$seed" > "$tmp/$variance-$seed-$i.jsonl" 2>&1 &
    done
  done
done
wait
cat "$tmp"/*.jsonl | grep '^{' > "$out"
grep -hv '^{' "$tmp"/*.jsonl | tail -n 20 >&2
echo "$(wc -l < "$out") runs in $out"
