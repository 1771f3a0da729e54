#!/usr/bin/env bash
# The robust-trainer grid (the BARPO paper, arXiv 2512.01228, Tables 2, 4, 8): per configuration, its seeds trained
# in one process (2M steps; their learning curves to benchmark/results/curves/), every seed under random, critic,
# MAD and RS (benchmark/results/select/), the median
# agent by the paper's selection (App. F.3: the mean of natural return and the worst of those four) under all six
# attacks and the two reference protocols (benchmark/results/full/).
#
#     bash benchmark/grids/trainers.sh HalfCheetah-v4 5 barppo-1.0 barppo-0.1 sappo-0.1
#     bash benchmark/grids/trainers.sh Walker2d-v4 3 ppo arppo-nog barppo-nog barppo sappo
#
# A configuration is ppo, arppo-nog (AR-PPO without guidance), barppo-nog, barppo or sappo (their per-env kappa), or
# barppo-K / sappo-K (kappa K). Re-running continues where it stopped (launch.py skips finished processes and
# resumes interrupted ones; an evaluation whose JSON exists is skipped; learned attacks are cached next to the
# checkpoints), also on another machine (`python benchmark/launch.py --park` before moving; docs/training.md). Then:
# add the cells to benchmark/report.py's CELLS and run it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
ENV=${1:?usage: trainers.sh ENV_ID SEEDS CONFIG...}
SEEDS=$(seq 1 "${2:?usage: trainers.sh ENV_ID SEEDS CONFIG...}")
shift 2
mkdir -p benchmark/results/select benchmark/results/full

for config in "$@"; do
  case $config in
    ppo) script=ppo_continuous.py tag="" flags="" ;;
    arppo-nog) script=arppo.py tag=__nog flags=--no-guidance ;;
    barppo-nog) script=barppo.py tag=__nog flags=--no-guidance ;;
    barppo | sappo) script=$config.py tag="" flags="" ;;
    barppo-[0-9]* | sappo-[0-9]*) script=${config%%-*}.py tag=__kappa${config#*-} flags="--kappa ${config#*-}" ;;
    *) echo "error: unknown configuration '$config' (ppo, arppo-nog, barppo-nog, barppo, sappo, barppo-K, sappo-K)" >&2; exit 2 ;;
  esac
  name=${script%.py}$tag exp=${script%.py}
  # a configuration with flags gets its own run name (runs/ENV__CONFIG__SEED__...), so that its curves are its runs'
  [ -n "$tag" ] && { exp=$config; flags="$flags --exp-name $config"; }
  $PY benchmark/launch.py --scripts "$script" --envs "$ENV" --seeds $SEEDS --seeds-per-process 9 --jobs 1 --extra="$flags" --tag "$tag"
  $PY benchmark/launch.py --collect --scripts "$script" --envs "$ENV" --seeds $SEEDS --seeds-per-process 9 --tag "$tag"
  runs=(runs/"${ENV}__${exp}"__[0-9]*)  # none on another machine than the training's: its committed curves stay
  [ ! -e "${runs[0]}" ] || $PY benchmark/curves.py --runs "${runs[@]}" --out benchmark/results/curves/${name}__$ENV.json
  models=()
  for seed in $SEEDS; do models+=("benchmark/checkpoints/${name}__${ENV}__$seed.safetensors"); done
  select=benchmark/results/select/${name}__$ENV.json
  [ -f "$select" ] || $PY eval_attacks.py --model "${models[@]}" --attacks fast --json "$select"
  kept=$($PY -c "import sys; sys.path.insert(0, 'benchmark'); import report
d = report.load('select/${name}__$ENV.json'); i, _ = report.select_median(d['results']); print(d['results'][i]['model'])")
  full=benchmark/results/full/${name}__$ENV.json
  [ -f "$full" ] || $PY eval_attacks.py --model "$kept" --attacks all ref --json "$full"
done
