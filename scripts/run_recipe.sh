#!/usr/bin/env bash
# Run one recipe through `accelerate launch`, on whatever hardware an accelerate config describes.
#
#   bash scripts/run_recipe.sh RECIPE [run_classification.py flags ...]
#
# Every flag after RECIPE goes to run_classification.py unchanged and overrides the recipe. Nothing else is set
# here: hyperparameters live in the recipe, hardware in the accelerate config.
#
# Environment:
#   ACCELERATE_CONFIG  accelerate config file, e.g. recipes/accelerate/multi_gpu.yaml
#                      (unset: accelerate's own default config, written by `accelerate config`, or its defaults)
#   ACCELERATE_ARGS    extra `accelerate launch` flags, e.g. "--num_processes 4" or "--machine_rank 1"
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: bash scripts/run_recipe.sh RECIPE [run_classification.py flags ...]" >&2
  exit 2
fi
recipe="$1"
shift
if [ ! -f "$recipe" ]; then
  echo "error: recipe not found: $recipe" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
launch_args=()
if [ -n "${ACCELERATE_CONFIG:-}" ]; then
  launch_args+=(--config_file "$ACCELERATE_CONFIG")
fi
read -r -a extra_launch_args <<< "${ACCELERATE_ARGS:-}"
launch_args+=(${extra_launch_args[@]+"${extra_launch_args[@]}"})

set -x
exec accelerate launch ${launch_args[@]+"${launch_args[@]}"} "$repo/run_classification.py" "$recipe" "$@"
