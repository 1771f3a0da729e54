#!/usr/bin/env bash
# The MuJoCo PR-MDP grid of two_timescale_adv.py (arXiv 2305.17342, Sec. 6 and App. E.4): victims trained by each
# defense at each attack budget, 3 seeds in one process, 2M victim steps; each seed then attacked by a fresh 1M-step
# action_mix attacker at its training budget and at the other one; the victims' training curves for Fig. 4a/b.
#
#     bash benchmark/grids/prmdp.sh Hopper-v4          # one env per core: run HalfCheetah-v4 beside it
#     PY=.venv/bin/python bash benchmark/grids/prmdp.sh HalfCheetah-v4
#     TRAIN_EPS=0.3 DEFENSES=min_oracle bash benchmark/grids/prmdp.sh HalfCheetah-v4  # one group: split an env over cores
#
# Re-running continues where it stopped: launch.py skips finished processes and resumes interrupted ones, an
# evaluation whose JSON exists is skipped, and the learned attackers are cached next to the checkpoints; also on
# another machine (`python benchmark/launch.py --park` before moving: docs/training.md).
# Then: python benchmark/report.py (the table from benchmark/results/prmdp/, the figures from curves/).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
ENV=${1:?usage: prmdp.sh ENV_ID}
BUDGETS="0.1 0.3"
ORACLE_ITERS=3  # min_oracle: attacker-only PPO iterations per victim iteration (its approximate best response); the file
                # names do not carry it: to try another, change it here and move the earlier results away
TRAIN_EPS=${TRAIN_EPS:-$BUDGETS}  # the victims' training budgets to run here (each group is still attacked at all of BUDGETS)
DEFENSES=${DEFENSES:-two_timescale single min_oracle}
mkdir -p benchmark/results/prmdp benchmark/results/curves

for attack in $BUDGETS; do  # the undefended baseline: the PPO zoo agent
  out=benchmark/results/prmdp/none__${ENV}__vs$attack.json
  [ -f "$out" ] || $PY eval_attacks.py --model zoo/ppo_continuous__$ENV.safetensors --attacks action_mix --eps-pi "$attack" --json "$out"
done
for eps in $TRAIN_EPS; do
  for defense in $DEFENSES; do  # each victim group is attacked right after it trains: its rows
    extra="--defense $defense --eps-pi $eps --exp-name tt-$defense-eps$eps"  # land before the next (slower) group trains
    [ "$defense" = min_oracle ] && extra="$extra --oracle-iters $ORACLE_ITERS"
    tag="__${defense}__eps_pi$eps"
    $PY benchmark/launch.py --scripts two_timescale_adv.py --envs "$ENV" --seeds 1 2 3 --seeds-per-process 3 --jobs 1 --extra="$extra" --tag "$tag"
    $PY benchmark/launch.py --collect --scripts two_timescale_adv.py --envs "$ENV" --seeds 1 2 3 --seeds-per-process 3 --tag "$tag"
    runs=(runs/"$ENV"__tt-$defense-eps${eps}__*)  # none on another machine than the training's: its committed curves stay
    [ ! -e "${runs[0]}" ] || $PY benchmark/curves.py --runs "${runs[@]}" --tags charts/episodic_return adversary/victim_grad_norm \
      --out benchmark/results/curves/two_timescale_adv__${defense}__eps_pi${eps}__$ENV.json
    for attack in $BUDGETS; do
      out=benchmark/results/prmdp/${defense}__eps_pi${eps}__${ENV}__vs$attack.json
      [ -f "$out" ] || $PY eval_attacks.py --model benchmark/checkpoints/two_timescale_adv__${defense}__eps_pi${eps}__${ENV}__{1,2,3}.safetensors \
        --attacks action_mix --eps-pi "$attack" --json "$out"
    done
  done
done
