"""pruned_ppo.py: the sparsity schedule, the pruning rules against references, pruned weights staying zero through
training, saliency's score window, the masks in the checkpoint, and the certificate of a pruned checkpoint."""
import glob
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.utils.prune
from conftest import ROOT, one_line_error, run
from safetensors import safe_open

import pruned_ppo as PR
from attacks.certificate import matrix_norms

SMALL = ("--env-id", "Hopper-v4", "--total-timesteps", 2048, "--num-steps", 256, "--num-minibatches", 4, "--update-epochs", 2,
         "--hidden-sizes", 32, 32, "--burn-in", 0.1, "--prune-end", 0.6, "--prune-interval", 2, "--progress", "False")


def test_cubic_schedule():
    args = PR.Args(target_sparsity=0.8, burn_in=0.25, prune_end=0.75)
    T = 1000
    assert PR.sparsity_at(0, T, args) == 0.0 and PR.sparsity_at(250, T, args) == 0.0  # nothing before burn-in
    assert PR.sparsity_at(500, T, args) == pytest.approx(0.8 * (1 - 0.5**3))  # halfway: s_f (1 - (1 - 1/2)^3)
    assert PR.sparsity_at(750, T, args) == pytest.approx(0.8) and PR.sparsity_at(1000, T, args) == pytest.approx(0.8)
    values = [PR.sparsity_at(t, T, args) for t in range(T + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))  # never decreases


def test_magnitude_mask_equals_torch_l1_unstructured_and_is_nested():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 40, 17, generator=g)  # three seeds
    mask = torch.ones_like(w)
    for sparsity in (0.3, 0.5, 0.9):
        (new,) = PR.update_masks([mask], [w.abs()], sparsity, "magnitude")
        for n in range(3):
            ref = torch.nn.Linear(17, 40)
            ref.weight.data.copy_(w[n])
            torch.nn.utils.prune.l1_unstructured(ref, "weight", amount=sparsity)
            assert torch.equal(new[n], ref.weight_mask)
        assert torch.all(new <= mask)  # nested: nothing pruned comes back
        mask = new
        w = w * mask  # as training leaves the pruned weights: exactly zero


def test_random_erk_densities_and_nesting():
    shapes = [(64, 11), (64, 64), (256, 256)]
    for density in (0.9, 0.5, 0.1):
        d = PR.erk_densities(shapes, density)
        assert sum(di * o * i for di, (o, i) in zip(d, shapes)) == pytest.approx(density * sum(o * i for o, i in shapes))
        assert all(0 < di <= 1 for di in d)
        assert d[0] >= d[1] >= d[2]  # (n_in + n_out) / (n_in n_out): small layers keep more
    assert PR.erk_densities(shapes, 0.9)[0] == 1.0  # the 11 -> 64 layer would exceed 1: kept dense, scale re-solved
    g = torch.Generator().manual_seed(1)
    masks = [torch.ones(2, o, i) for o, i in shapes]
    scores = [torch.rand(2, o, i, generator=g) for o, i in shapes]
    for sparsity in (0.2, 0.5, 0.8):
        new = PR.update_masks(masks, scores, sparsity, "random")
        assert all(torch.all(a <= b) for a, b in zip(new, masks))
        total = sum(m[0].numel() for m in new)
        assert sum((1 - m[0]).sum().item() for m in new) / total == pytest.approx(sparsity, abs=2e-3)
        masks = new


def topk_masks(masks, scores, sparsity, method):
    """The plain reference of update_masks: torch.topk over each seed's row, as torch.nn.utils.prune does."""
    per_layer = [1 - d for d in PR.erk_densities([m.shape[1:] for m in masks], 1 - sparsity)] if method == "random" else [sparsity] * len(masks)
    new = []
    for mask, score, layer_sparsity in zip(masks, scores, per_layer):
        k = round(layer_sparsity * mask[0].numel())
        flat = score.flatten(1).clone()
        if method != "magnitude_ste":
            flat[mask.flatten(1) == 0] = -float("inf")
        kept = torch.ones_like(flat)
        if k > 0:
            kept.scatter_(1, torch.topk(flat, k, dim=1, largest=False).indices, 0.0)
        new.append(kept.view_as(mask))
    return new


@pytest.mark.parametrize("method", ["magnitude", "random", "saliency", "magnitude_ste"])
def test_fast_masks_equal_the_topk_reference_over_a_schedule(method):
    g = torch.Generator().manual_seed(3)
    shapes = [(64, 11), (64, 64), (1, 64)]
    masks = ref = [torch.ones(3, o, i) for o, i in shapes]
    for sparsity in (0.0, 0.1, 0.1, 0.35, 0.6, 0.6, 0.9):  # repeats: a layer already at its k
        scores = [torch.rand(3, o, i, generator=g) for o, i in shapes]
        masks, ref = PR.update_masks(masks, scores, sparsity, method), topk_masks(ref, scores, sparsity, method)
        assert all(torch.equal(a, b) for a, b in zip(masks, ref))


def test_tied_scores_prune_exactly_k_lowest():
    g = torch.Generator().manual_seed(4)
    score = torch.randint(0, 5, (2, 30, 20), generator=g).float()  # many ties at every threshold
    for method in ("magnitude", "magnitude_ste"):
        for sparsity in (0.25, 0.5, 0.77):
            (mask,) = PR.update_masks([torch.ones_like(score)], [score], sparsity, method)
            for n in range(2):
                kept, pruned = score[n][mask[n] == 1], score[n][mask[n] == 0]
                assert pruned.numel() == round(sparsity * 600) and pruned.max() <= kept.min()


def test_ste_masks_may_regrow_and_others_never():
    w = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    (mask,) = PR.update_masks([torch.ones_like(w)], [w.abs()], 0.5, "magnitude_ste")
    assert mask.tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    grown = torch.tensor([[[5.0, 2.0, 3.0, 0.5]]])  # the dense weight 0 grew under straight-through gradients
    assert PR.update_masks([mask], [grown.abs()], 0.5, "magnitude_ste")[0].tolist() == [[[1.0, 0.0, 1.0, 0.0]]]
    assert PR.update_masks([mask], [grown.abs()], 0.5, "magnitude")[0].tolist() == [[[0.0, 0.0, 1.0, 1.0]]]


def test_batched_surrogate_equals_the_certificate_module():
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(3, 64, 11, generator=g), torch.randn(3, 64, 64, generator=g) * (torch.rand(3, 64, 64, generator=g) > 0.5), torch.randn(3, 3, 64, generator=g)]
    got = PR.lipschitz_surrogate(weights)
    for n in range(3):
        expected = np.prod([matrix_norms(w[n])["surrogate"] for w in weights])
        assert got[n].item() == pytest.approx(expected, rel=1e-12)


def test_prunable_layers_follow_the_flags():
    agent = PR.Agent(11, 3, PR.Args(hidden_sizes=(8, 8), init_std=1.0), [torch.Generator().manual_seed(0)])
    names = lambda **kw: [n for n, _ in PR.prunable_layers(agent, PR.Args(**kw))]
    assert names() == ["actor.layers.0.weight", "actor.layers.1.weight", "critic.layers.0.weight", "critic.layers.1.weight"]
    assert names(prune_target="actor", prune_output_layer=True) == ["actor.layers.0.weight", "actor.layers.1.weight", "actor.layers.2.weight"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["magnitude", "random", "magnitude_ste", "saliency"])
def test_training_keeps_pruned_weights_zero_and_saves_the_masks(tmp_path, method):
    """Two seeds, kappa 0 (pruning only): the checkpoint's weights are zero wherever its prune/ mask is, the sparsity
    reached is the target, and eval_attacks.py evaluates it and reports the certificate with that sparsity."""
    proc = run("pruned_ppo.py", *SMALL, "--prune-method", method, "--target-sparsity", 0.5, "--kappa", 0, "--num-seeds", 2,
               "--eval-episodes", 1, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = sorted(glob.glob(str(tmp_path / "runs" / "*" / "pruned_ppo.safetensors")))
    assert len(paths) == 2
    for path in paths:
        with safe_open(path, "pt") as f:
            meta = json.loads(f.metadata()["robust_rl"])
            masks = {k[len("prune/"):]: f.get_tensor(k) for k in f.keys() if k.startswith("prune/")}
            weights = {k: f.get_tensor(k) for k in f.keys()}
        assert sorted(masks) == ["actor.layers.0.weight", "actor.layers.1.weight", "critic.layers.0.weight", "critic.layers.1.weight"]
        for name, mask in masks.items():
            assert torch.all(weights[name.replace(".", "/", 1)][mask == 0] == 0), name
        pruned = sum((1 - m).sum().item() for m in masks.values()) / sum(m.numel() for m in masks.values())
        assert pruned == pytest.approx(0.5, abs=2e-3) and meta["prune"]["sparsity"] == pytest.approx(pruned)
        assert meta["prune"]["method"] == method
        if method == "magnitude_ste":  # the dense weights live on for resuming, and differ where pruned
            with safe_open(path, "pt") as f:
                dense = f.get_tensor("resume/prune/dense/0")
            # straight-through: a pruned weight keeps its dense value and learns on from it (about 0.1 here); were it
            # reset to W * M = 0 before each step, it would hold one Adam step, <= the learning rate 3e-4
            assert dense[masks["actor.layers.0.weight"] == 0].abs().mean() > 30 * 3e-4


@pytest.mark.slow
def test_pruned_weights_are_zero_before_every_optimizer_step(tmp_path, monkeypatch):
    """The script in process, each Adam step watched: before every step the pruned layers hold exact zeros wherever
    pruned so far, so their number never drops (masking once an iteration, or only before saving, would let pruned
    weights move within an iteration) and it ends at the target."""
    import runpy
    import signal

    counts = []
    real = torch.optim.Adam.step

    def step(self, *args, **kwargs):  # the hidden layers (32 outputs) are the pruned ones
        counts.append(sum(int((p == 0).sum()) for group in self.param_groups for p in group["params"] if p.ndim == 3 and p.shape[1] == 32))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pruned_ppo.py", *map(str, SMALL), "--prune-method", "magnitude", "--target-sparsity", "0.5", "--kappa", "0",
                                      "--eval-episodes", "0", "--no-save-model"])
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runpy.run_path(os.path.join(ROOT, "pruned_ppo.py"), run_name="__main__")
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    prunable = 2 * (11 * 32 + 32 * 32)  # actor and critic hidden layers of Hopper's 11 observations
    assert len(counts) == 64 and counts[0] == 0
    assert all(b >= a for a, b in zip(counts, counts[1:])), counts
    assert counts[-1] == pytest.approx(0.5 * prunable, abs=4)


@pytest.mark.slow
def test_saliency_sums_the_scores_since_the_last_mask_update(tmp_path):
    """Saliency's scores |w dL/dw| add up over the optimizer steps before a mask update that can change the masks and
    restart from zero at each: 64 steps (8 iterations x 2 epochs x 4 minibatches) at --prune-interval 2 end on an
    update (every score 0); at --prune-interval 5 the last update is step 60 and steps 61-64 remain: with --prune-end
    1.0 the schedule still rises to the next update (65), so their scores are positive on the kept weights and 0 on the
    pruned ones (w = 0 there); with --prune-end 0.6 the target was reached, no update can change a mask, and they are
    not summed (0)."""
    flags = list(SMALL)
    for flag in ("--prune-interval", "--prune-end"):
        del flags[flags.index(flag):flags.index(flag) + 2]
    for interval, prune_end, summed in ((2, 0.6, False), (5, 1.0, True), (5, 0.6, False)):
        folder = tmp_path / f"{interval}_{prune_end}"
        folder.mkdir()
        proc = run("pruned_ppo.py", *flags, "--prune-interval", interval, "--prune-end", prune_end, "--prune-method", "saliency",
                   "--target-sparsity", 0.5, "--kappa", 0, "--eval-episodes", 0, cwd=folder, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (path,) = glob.glob(str(folder / "runs" / "*" / "pruned_ppo.safetensors"))
        with safe_open(path, "pt") as f:
            names = sorted(k[len("prune/"):] for k in f.keys() if k.startswith("prune/"))
            masks = [f.get_tensor(f"prune/{name}") for name in names]
            scores = [f.get_tensor(f"resume/prune/saliency/{i}") for i in range(len(names))]
            assert json.loads(f.metadata()["robust_rl"])["prune"]["step"] == 64
        assert len(names) == 4
        for name, mask, score in zip(names, masks, scores):
            assert score.shape == mask.shape, name
            if summed:
                assert torch.all(score[mask == 0] == 0) and (score[mask == 1] > 0).float().mean() > 0.99, name
            else:
                assert torch.all(score == 0), name


def test_target_kl_cutting_epochs_still_reaches_the_target_sparsity(tmp_path):
    """--target-kl stops every iteration after its first epoch (of 2): half the planned optimizer steps run, but the
    schedule counts the nominal steps, so the last mask update still prunes to the target."""
    proc = run("pruned_ppo.py", *SMALL, "--prune-method", "magnitude", "--target-sparsity", 0.5, "--kappa", 0, "--target-kl", 1e-12,
               "--eval-episodes", 0, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "pruned_ppo.safetensors"))
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["robust_rl"])
        adam_steps = {f.get_tensor(k).item() for k in f.keys() if k.startswith("resume/adam/") and k.endswith("/step")}
    assert adam_steps == {8 * 4.0}  # 8 iterations x 1 epoch x 4 minibatches: the second epoch never ran
    assert meta["prune"]["sparsity"] == pytest.approx(0.5, abs=2e-3) and meta["prune"]["step"] == 8 * 2 * 4


@pytest.mark.parametrize("flags,message", [(("--target-sparsity", "1.0"), "--target-sparsity"), (("--burn-in", "0.8"), "--burn-in"),
                                           (("--prune-interval", "0"), "--prune-interval"), (("--prune-method", "lottery"), "")])
def test_bad_pruning_flags_exit_2(tmp_path, flags, message):
    proc = run("pruned_ppo.py", "--env-id", "Hopper-v4", "--total-timesteps", 128, "--num-steps", 64, "--num-minibatches", 2,
               "--eval-episodes", 0, *flags, cwd=tmp_path, timeout=60)
    if message:
        assert message in one_line_error(proc)
    else:  # tyro refuses a choice outside the Literal with its own message and exit status 2
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.slow
def test_eval_attacks_reports_the_certificate_of_a_pruned_checkpoint(tmp_path):
    """eval_attacks.py's `certificate`: the actor's sparsity as its weights say (0 for --prune-method none), and MAD's
    largest action change within the certified bound."""
    reports = {}
    for method in ("none", "magnitude"):
        d = tmp_path / method
        d.mkdir()
        proc = run("pruned_ppo.py", *SMALL, "--prune-method", method, "--target-sparsity", 0.6, "--kappa", 0, "--eval-episodes", 0, cwd=d, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (path,) = glob.glob(str(d / "runs" / "*" / "pruned_ppo.safetensors"))
        out = d / "eval.json"
        ev = run("eval_attacks.py", "--model", path, "--attacks", "mad", "--episodes", 2, "--json", out, cwd=d, timeout=300)
        assert ev.returncode == 0, ev.stderr[-3000:]
        assert "certificate: Lipschitz surrogate" in ev.stdout
        (result,) = json.load(open(out))["results"]
        reports[method] = (path, result["certificate"])
    path, cert = reports["magnitude"]
    with safe_open(path, "pt") as f:
        actor = [f.get_tensor(k) for k in f.keys() if k.startswith("actor/") and k.endswith(".weight")]
    assert cert["sparsity"] == pytest.approx(sum((w == 0).sum().item() for w in actor) / sum(w.numel() for w in actor), abs=1e-12)
    assert cert["sparsity"] > 0.4  # 60% of the hidden layers; the unpruned action head dilutes it
    assert 0 < cert["empirical_max_deviation"] <= cert["action_deviation_bound"]
    assert reports["none"][1]["sparsity"] == 0.0
