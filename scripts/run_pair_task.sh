#!/usr/bin/env bash
# Fine-tune on a sentence-pair task with its recipe (recipes/TASK/chinese-bert-wwm-ext.json).
#
#   bash scripts/run_pair_task.sh TASK [run_classification.py flags ...]
#   bash scripts/run_pair_task.sh lcqmc --train_file my/lcqmc/train.tsv --learning_rate 3e-5
#   ACCELERATE_CONFIG=recipes/accelerate/multi_gpu.yaml bash scripts/run_pair_task.sh afqmc
#
# TASK is one of the pair tasks below. Flags after TASK go to run_classification.py and override the recipe;
# hardware comes from ACCELERATE_CONFIG / ACCELERATE_ARGS (see scripts/run_recipe.sh).
set -euo pipefail

pair_tasks=(lcqmc bq_corpus afqmc)

if [ $# -lt 1 ]; then
  echo "usage: bash scripts/run_pair_task.sh TASK [run_classification.py flags ...]; TASK: ${pair_tasks[*]}" >&2
  exit 2
fi
task="$1"
shift

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for known in "${pair_tasks[@]}"; do
  if [ "$task" = "$known" ]; then
    exec bash "$repo/scripts/run_recipe.sh" "$repo/recipes/$task/chinese-bert-wwm-ext.json" "$@"
  fi
done
echo "error: unknown pair task '$task'; known: ${pair_tasks[*]}" >&2
exit 2
