#!/usr/bin/env bash
# The pruning grid of pruned_ppo.py (arXiv 2510.12939, Sec. 4 and App. C): SA regularizer on (sappo.py's kappa),
# 256-256 networks; each configuration's seeds in one process, then every agent under random, critic, MAD and RS
# (50 episodes) into benchmark/results/pruning/{method}{sparsity}[__interval{k}]__{env}.json.
#
#     bash benchmark/grids/pruning.sh frontier Hopper-v4 3     # magnitude at 0 (dense), 0.3, 0.5, 0.7, 0.9; 3 seeds; 2M steps
#     bash benchmark/grids/pruning.sh frontier HalfCheetah-v4 2
#     bash benchmark/grids/pruning.sh methods Hopper-v4 2      # random, magnitude_ste, saliency at 0.3 and 0.7; 2M steps
#     bash benchmark/grids/pruning.sh interval Hopper-v4 2     # magnitude 0.5 with --prune-interval 1 and 100; 2M steps
#     bash benchmark/grids/pruning.sh strong Hopper-v4 3       # after those: the dense agent and each method's sweet spot
#                                                              # under SA-RL and PA-AD (1M-step fits each), into strong/
#
# Re-running continues where it stopped (launch.py skips finished processes and resumes interrupted ones; an
# evaluation whose JSON exists is skipped), also on another machine (`python benchmark/launch.py --park` before
# moving: docs/training.md). Then: python benchmark/report.py (tables and plots). `strong` takes its agents from
# `report.py --sweet-spots ENV_ID` (each method's sweet spot on its own sparsities and seeds) and the seeds among 1..SEEDS
# that each has; a JSON already in benchmark/results/pruning/strong/ is kept even if the sweet spot moved since.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
PART=${1:?usage: pruning.sh frontier|methods|interval|strong ENV_ID SEEDS}
ENV=${2:?usage: pruning.sh frontier|methods|interval|strong ENV_ID SEEDS}
SEEDS=$(seq 1 "${3:?usage: pruning.sh frontier|methods|interval|strong ENV_ID SEEDS}")
mkdir -p benchmark/results/pruning

one() {  # name, flags: train the seeds in one process, copy the checkpoints, attack every seed
  local name=$1 flags=$2
  # the closing evaluation only names the natural return for the launcher (10 episodes, not 50): every agent's
  # evaluation of record is eval_attacks.py's below. The paper's 256-256 networks are pruned_ppo.py's default, named
  # here so that the grid does not depend on it.
  $PY benchmark/launch.py --scripts pruned_ppo.py --envs "$ENV" --seeds $SEEDS --seeds-per-process 9 --jobs 1 --extra="$flags --hidden-sizes 256 256 --eval-episodes 10" --tag "__$name"
  $PY benchmark/launch.py --collect --scripts pruned_ppo.py --envs "$ENV" --seeds $SEEDS --seeds-per-process 9 --tag "__$name"
  local out=benchmark/results/pruning/${name}__$ENV.json models=()
  for seed in $SEEDS; do models+=("benchmark/checkpoints/pruned_ppo__${name}__${ENV}__$seed.safetensors"); done
  [ -f "$out" ] || $PY eval_attacks.py --model "${models[@]}" --attacks fast --json "$out"
}

case $PART in
  frontier)
    one none "--prune-method none"
    for s in 0.3 0.5 0.7 0.9; do one magnitude$s "--prune-method magnitude --target-sparsity $s"; done ;;
  methods)
    for m in random magnitude_ste saliency; do
      for s in 0.3 0.7; do one $m$s "--prune-method $m --target-sparsity $s"; done
    done ;;
  interval)
    for k in 1 100; do one magnitude0.5__interval$k "--prune-method magnitude --target-sparsity 0.5 --prune-interval $k"; done ;;
  strong)
    names=$($PY benchmark/report.py --sweet-spots "$ENV")
    mkdir -p benchmark/results/pruning/strong
    for name in $names; do
      out=benchmark/results/pruning/strong/${name}__$ENV.json models=()
      for seed in $SEEDS; do
        f=benchmark/checkpoints/pruned_ppo__${name}__${ENV}__$seed.safetensors
        [ -f "$f" ] && models+=("$f")
      done
      [ -f "$out" ] || $PY eval_attacks.py --model "${models[@]}" --attacks sa_rl pa_ad --json "$out"
    done ;;
  *) echo "error: unknown part '$PART' (choose from frontier, methods, interval, strong)" >&2; exit 2 ;;
esac
