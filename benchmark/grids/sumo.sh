#!/usr/bin/env bash
# The puck-sumo grid of two_timescale_adv.py (arXiv 2305.17342, Sec. 7 and App. E; docs/sumo.md): the self-play benign
# policies (phase 1, 3 seeds in one process) and a fresh 1M-step action_mix attacker against them at each budget, then
# per budget: victims fine-tuned from them by single and two timescales at that budget (and, before the first budget,
# by self-play and fictitious play), each victim group attacked by a fresh attacker at that budget. Win / loss / draw
# rates over 200 games and the W2 stealth measure per seed go to benchmark/results/sumo/{victim}__sumo-puck__vs{eps_pi}[__attack_seed{k}].json. `ant`: ant-sumo at the budget that fits here,
# the self-play benign policies of seeds 1-3 after ANT_BENIGN_STEPS (default 2M of the script's 10M) env steps each,
# attacked at eps_pi 1.0 and 0.3 (about 3 core-hours).
#
#     bash benchmark/grids/sumo.sh                      # puck: about 16 core-hours on the AMD VM, 7 on the Intel one (docs/sumo.md)
#     bash benchmark/grids/sumo.sh ant
#     PY=.venv/bin/python bash benchmark/grids/sumo.sh
#     bash benchmark/grids/sumo.sh & bash benchmark/grids/sumo.sh    # two cores: two processes share the grid
#     BUDGETS=0.3 bash benchmark/grids/sumo.sh           # the self-play attacks and Fig. 4c at eps_pi 0.3 only
#     ATTACK_SEEDS=0 bash benchmark/grids/sumo.sh        # one attacker per victim group and budget (default: 0 1)
#
# Several processes in the same clone share the work: each step (a training of 3 seeds, or an attack on one victim
# group) is claimed under runs/.locks/ before it runs, a process skips what another holds and what waits on it (an
# attack on a group still in training, a defense before its benign policies), and goes over the list again until
# every step is done. A claim whose process has died (an interrupt, a crash) is taken over.
# Re-running continues where it stopped: a finished training (its checkpoints copied to benchmark/checkpoints/) or an
# evaluation whose JSON exists is skipped, an interrupted training resumes from its last checkpoint (SIGTERM or Ctrl-C
# save one; --save-every 10 iterations otherwise), and the learned attackers are cached next to the checkpoints. Phase 1 runs alone
# (`--defense none` and one phase-2 iteration), so that every defense starts from the same finished benign policies.
# On another machine: `python benchmark/launch.py --park` here before moving (docs/training.md); this script puts the
# parked run folders back under runs/ first.
# Then: python benchmark/report.py (the table from benchmark/results/sumo/).
set -euo pipefail
BODY=${1:-puck}
[ $# -le 1 ] && { [ "$BODY" = puck ] || [ "$BODY" = ant ]; } || { echo "usage: sumo.sh [puck|ant] (PY, EXTRA_TRAIN, EXTRA_EVAL, ANT_BENIGN_STEPS come from the environment)" >&2; exit 2; }
cd "$(dirname "$0")/../.."
PY=${PY:-python}
EXTRA_TRAIN=${EXTRA_TRAIN:-}  # e.g. a smoke run in a scratch clone: "--benign-timesteps 4096 --total-timesteps 4096 --num-steps 256"
EXTRA_EVAL=${EXTRA_EVAL:-}    # and "--action-mix-steps 4096 --episodes 20"
ENV=sumo-$BODY
BUDGETS=${BUDGETS:-0.3 0.7 1.0}
# two fresh attackers per victim group and budget (fits seeded 0 and 1): one 1M-step fit can settle in draws against a
# victim that the benign policy alone beats (benchmark/RESULTS.md, the sumo section); the table takes the better one
ATTACK_SEEDS=${ATTACK_SEEDS:-0 1}
CK=benchmark/checkpoints LOCKS=runs/.locks
mkdir -p "$CK" benchmark/results/sumo benchmark/logs "$LOCKS"

me() { echo "$1 $(ps -o lstart= -p "$1" 2>/dev/null)"; }  # a process: its pid and start time (pids are reused)
claim() {  # step name: 0 if this process now holds it; 1 if a live process does
  local lock=$LOCKS/$ENV.$1 holder
  mkdir "$lock" 2>/dev/null && { me $$ > "$lock/by"; return 0; }
  holder=$(cat "$lock/by" 2>/dev/null || true)
  if [ -z "$holder" ]; then  # being claimed this instant, or its claimer died in between (an old lock)
    [ -n "$(find "$lock" -maxdepth 0 -mmin +1)" ] || return 1
  elif [ "$(me "${holder%% *}")" = "$holder" ]; then return 1; fi
  rm -rf "$lock"  # its process is gone: take it over (if another process is faster, it is that one's)
  mkdir "$lock" 2>/dev/null && { me $$ > "$lock/by"; return 0; }
  return 1
}
release() { rm -rf "$LOCKS/$ENV.$1"; }

until claim unpark; do sleep 1; done  # run folders parked on another machine (launch.py --park) continue here
$PY benchmark/launch.py --unpark
release unpark

WAITING=0  # set when a step is left for later: another process holds it, or what it needs is not there yet
train() {  # name, flags: seeds 1-3 in one process; when it ends, every seed's checkpoint is copied to benchmark/checkpoints/
  local name=$1 flags=$2 log=benchmark/logs/two_timescale_adv__${ENV}__$1.log
  [ -f "$CK/two_timescale_adv__${name}__${ENV}__3.safetensors" ] && return 0
  if [ "$name" != benign ] && [ ! -f "$CK/two_timescale_adv__benign__${ENV}__3.safetensors" ]; then WAITING=1; return 0; fi
  claim "train.$name" || { WAITING=1; return 0; }
  [ -f "$CK/two_timescale_adv__${name}__${ENV}__3.safetensors" ] && { release "train.$name"; return 0; }  # done while we looked
  # phase 1's run has its own name: a run named benign would write its victim over its benign.safetensors
  local exp=${name/#benign/phase1} last ckpt=
  # an interrupted run continues: seed 1's newest folder of this name, from the victim's checkpoint in phase 2, else benign
  last=$(ls -dt runs/${ENV}__${exp}__1__* 2>/dev/null | head -1 || true)
  if [ -n "$last" ] && [ -f "$last/$exp.safetensors" ]; then ckpt=$last/$exp.safetensors
  elif [ -n "$last" ] && [ -f "$last/benign.safetensors" ]; then ckpt=$last/benign.safetensors; fi
  if [ -n "$ckpt" ]; then
    $PY two_timescale_adv.py --resume "$ckpt" >> "$log" 2>&1
  else
    $PY two_timescale_adv.py --env-id $ENV --seed 1 --num-seeds 3 --exp-name "$exp" $EXTRA_TRAIN $flags > "$log" 2>&1
  fi
  # the run ends with one "seed k: benign policy saved to B; model saved to M" line per seed ("... from B" with --benign);
  # the last three: a finished run resumed after a failed copy prints them again into the same log
  local seed=1
  while read -r benign model; do
    [ "$name" = benign ] && cp "$benign" "$CK/two_timescale_adv__benign__${ENV}__$seed.safetensors"
    [ "$name" = benign ] || cp "$model" "$CK/two_timescale_adv__${name}__${ENV}__$seed.safetensors"
    seed=$((seed + 1))
  done < <(sed -n 's/^seed [0-9]*: benign policy \(saved to\|from\) \(.*\); model saved to \(.*\)$/\2 \3/p' "$log" | tail -n 3)
  [ $seed = 4 ] || { echo "error: $log does not name the 3 seeds' checkpoints" >&2; exit 1; }
  release "train.$name"
}

attack() {  # victim group, eps_pi: its 3 seeds against a fresh attacker, one per attack seed (report.py takes the best)
  local k tag key out
  for k in $ATTACK_SEEDS; do
    tag=$([ "$k" = 0 ] || echo "__attack_seed$k") key=attack.$1.$2$([ "$k" = 0 ] || echo ".seed$k")
    out=benchmark/results/sumo/$1__${ENV}__vs$2$tag.json
    [ -f "$out" ] && continue
    [ -f "$CK/two_timescale_adv__$1__${ENV}__3.safetensors" ] || { WAITING=1; return 0; }  # its training is another's
    claim "$key" || { WAITING=1; continue; }
    [ -f "$out" ] || $PY eval_attacks.py --model "$CK"/two_timescale_adv__$1__${ENV}__{1,2,3}.safetensors --attacks action_mix --eps-pi "$2" \
      --attack-seed "$k" $EXTRA_EVAL --json "$out" > "benchmark/logs/${ENV}__$1__vs$2$tag.log" 2>&1
    release "$key"
  done
}

grid_ant() {  # the self-play victims and the attack on them; the defenses would cost about 15x the puck's
  train benign "--defense none --total-timesteps 2048 --benign-timesteps ${ANT_BENIGN_STEPS:-2000000}"
  for eps in 1.0 0.3; do attack benign "$eps"; done
}

grid_puck() {
  # the benign policies (the self-play victims) first, and the attack on them: the paper's Fig. 3 and 6 / Table 4 shape
  train benign "--defense none --total-timesteps 2048"
  for eps in $BUDGETS; do attack benign "$eps"; done
  B="$CK/two_timescale_adv__benign__${ENV}__1.safetensors $CK/two_timescale_adv__benign__${ENV}__2.safetensors $CK/two_timescale_adv__benign__${ENV}__3.safetensors"
  # the victims of every defense from the same benign policies, then the attack on each: Fig. 4c, one eps_pi at a time,
  # so that a stopped grid leaves whole slices (the baselines are trained before the first slice; train skips them after)
  for eps in $BUDGETS; do
    train two_timescale_eps$eps "--defense two_timescale --eps-pi $eps --benign $B"
    train single_eps$eps "--defense single --eps-pi $eps --benign $B"
    train self_play "--defense self_play --benign $B"
    train fictitious_play "--defense fictitious_play --benign $B"
    for victim in two_timescale_eps$eps single_eps$eps self_play fictitious_play; do attack "$victim" "$eps"; done
  done
}

# over the list until every step is done; a pass that left steps to other processes waits a little, then looks again
while :; do
  WAITING=0
  grid_$BODY
  [ $WAITING = 0 ] && break
  sleep "${POLL_SECONDS:-30}"
done
