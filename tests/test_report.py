"""benchmark/report.py: the paper's agent selection, the IQM intervals, and the generated sections being current."""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmark"))
import report  # noqa: E402


def fake(seed, natural, **attacks):
    return {"model": f"x/barppo__kappa0.3__Hopper-v4__{seed}.safetensors", "natural": {"mean": natural},
            "attacks": {k: {"mean": v} for k, v in attacks.items()}}


def test_selection_is_the_median_of_natural_plus_worst():
    results = [
        fake(1, 3000, random=2900, critic=2800, mad=100, rs=2000),  # (3000 + 100) / 2 = 1550
        fake(2, 2000, random=1900, critic=1800, mad=1700, rs=1600),  # 1800
        fake(3, 3600, random=3500, critic=3400, mad=3300, rs=1000),  # 2300
        fake(4, 3400, random=3300, critic=3200, mad=3100, rs=3000),  # 3200
        fake(5, 1000, random=900, critic=800, mad=700, rs=600),  # 800
    ]
    idx, scores = report.select_median(results)
    assert scores == [1550, 1800, 2300, 3200, 800]
    assert idx == 1  # median score 1800: seed 2, although seed 3 has the median natural return
    assert report.seed_of(results[idx]["model"]) == 2
    # the worst counts only the four fast attacks, even when a learned attack is lower
    results[1]["attacks"]["sa_rl"] = {"mean": -500}
    assert report.score(results[1]) == (2000, 1600, "rs")
    assert report.score(results[1], report.SIX) == (2000, -500, "sa_rl")


def test_even_count_takes_the_lower_middle():
    results = [fake(s, 1000 * s, random=1000 * s, critic=1000 * s, mad=1000 * s, rs=1000 * s) for s in (1, 2, 3, 4)]
    assert report.select_median(results)[0] == 1


def test_iqm_is_rliables_aggregate_iqm_bit_for_bit():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 5, 7, 10, 50):
        for _ in range(20):
            x = rng.normal(1000, 800, size=(n, 1)) * rng.choice([1e-3, 1, 1e3])
            assert report.iqm(x) == metrics.aggregate_iqm(x)


def test_iqm_interval():
    values = [10.0, 200.0, 210.0, 220.0, 5000.0]
    point, lo, hi = report.iqm_ci(values, reps=2000)
    assert point == pytest.approx(stats.trim_mean(values, 0.25))  # the middle three: 210
    assert lo <= point <= hi
    assert lo >= min(values) and hi <= max(values)
    assert report.iqm_ci(values, reps=2000) == (point, lo, hi)  # seeded: the tables are reproducible
    assert np.isclose(report.iqm_ci([5.0] * 5, reps=500)[1], 5.0)


def test_generated_sections_are_current():
    """RESULTS.md and README.md hold exactly what the committed JSONs give (run benchmark/report.py after new results)."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmark", "report.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_curves_extract_thins_by_block_means(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "Hopper-v4__barppo__7__123_abc"
    w = SummaryWriter(str(run))
    for step in range(10):
        w.add_scalar("charts/episodic_return", float(step), step * 100)
    w.close()
    out = tmp_path / "c.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmark", "curves.py"), "--runs", str(run), "--out", str(out), "--points", "5"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    doc = __import__("json").loads(out.read_text())
    (r,) = doc["runs"]
    assert r["seed"] == 7  # no checkpoint: the seed from the folder name
    c = r["curves"]["charts/episodic_return"]
    assert c["steps"] == [100, 300, 500, 700, 900] and c["values"] == [0.5, 2.5, 4.5, 6.5, 8.5]
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "benchmark", "curves.py"), "--runs", str(tmp_path / "nope"), "--out", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and "Traceback" not in bad.stderr


def pruning_json(folder, name, seeds):
    """seeds: [(natural, random, critic, mad, rs)] -> a fast-attack eval JSON named as the pruning grid's."""
    results = [{"model": f"m__{i + 1}.safetensors", "natural": {"mean": s[0]},
                "attacks": {a: {"mean": v} for a, v in zip(report.FAST, s[1:])},
                "certificate": {"lipschitz_surrogate": 10.0, "spectral_product": 5.0, "action_deviation_bound": 2.0, "empirical_max_deviation": 0.5}}
               for i, s in enumerate(seeds)]
    doc = {"command": "eval_attacks.py ...", "git_commit": "0" * 40, "date": "2026-11-22T00:00:00+00:00", "machine": "test", "results": results}
    (folder / name).write_text(__import__("json").dumps(doc))


def test_pruning_sweet_spots(tmp_path):
    pruning_json(tmp_path, "none__Hopper-v4.json", [(1000, 500, 500, 500, 500), (1000, 500, 500, 500, 500)])
    # 0.3: clean 1.1, robust 1.0 -> 1.05; 0.5: clean 1.0, robust 1.3 -> 1.15 (the sweet spot); 0.7: clean 0.5, robust
    # (1.6 + 1.6 + 1.6 + 0.9) / 4 = 1.425 -> 0.96
    pruning_json(tmp_path, "magnitude0.3__Hopper-v4.json", [(1100, 500, 500, 500, 500), (1100, 500, 500, 500, 500)])
    pruning_json(tmp_path, "magnitude0.5__Hopper-v4.json", [(1000, 650, 650, 650, 650), (1000, 650, 650, 650, 650)])
    pruning_json(tmp_path, "magnitude0.7__Hopper-v4.json", [(500, 800, 800, 800, 800), (500, 800, 800, 800, 100)])
    pruning_json(tmp_path, "magnitude0.5__interval1__Hopper-v4.json", [(5000, 5000, 5000, 5000, 5000)])  # not a frontier point
    data = report.load_pruning(str(tmp_path))
    configs = data["Hopper-v4"]
    assert {(c["method"], c["sparsity"], c["interval"]) for c in configs} == {
        ("none", 0.0, 10), ("magnitude", 0.3, 10), ("magnitude", 0.5, 10), ("magnitude", 0.7, 10), ("magnitude", 0.5, 1)}
    dense = next(c for c in configs if c["method"] == "none")
    frontier = [c for c in configs if c["method"] == "magnitude" and c["interval"] == 10]
    c, clean, robust, worst = report.sweet_spot(frontier, dense)
    assert c["sparsity"] == 0.5 and clean == pytest.approx(1.0) and robust == pytest.approx(1.3) and worst == pytest.approx(1.3)
    assert report.robust_scores(frontier[2], dense) == pytest.approx((0.5, 1.425, 0.9))
    # Table 3: random, critic, MAD peak at 0.7 (mean 800), RS at 0.5 (650 > 0.7's 450): mode 0.7;
    # worst seeds there: 800, 800, 800 and 650 -> mean 762.5, normalized by the dense worst seeds (500) 1.525
    mode, absolute, normalized = report.worst_seed_summary(frontier, dense)
    assert mode == 0.7 and absolute == pytest.approx(762.5) and normalized == pytest.approx(1.525)
    text, plots = report.pruning_section(data)
    assert "| magnitude | 50% | 1.00 | 1.30 | 1.30 | 1.15 | 70% | 762 | 1.53 |" in text
    assert "| magnitude | 0.5 | 1 | 1 |  | 5000 +- 0 |" in text  # the interval ablation is listed, not a sweet-spot candidate
    # per configuration: norm. clean 0.5, norm. worst 450 / 500, norm. robust the per-attack mean 1.425
    assert "| magnitude | 0.7 | 10 | 2 |  | 500 +- 0 | 450 +- 350 | 712 +- 88 | 0.50 | 0.90 | 1.43 |" in text
    assert "all of its own" not in text  # one method on one grid: one table
    dense["results"][0]["global_step"] = dense["results"][1]["global_step"] = 999424  # a 1M-step run is labelled
    assert "| none | 0 | 10 | 2 | 1.0M | 1000 +- 0 |" in report.pruning_section(data)[0]
    assert len(plots["Hopper-v4"]) == 5
    assert plots["Hopper-v4"][-1]["robust"] == pytest.approx([1.6, (1.6 * 3 + 0.2) / 4])  # per seed, each attack / dense mean


def test_pruning_robust_is_normalized_per_attack(tmp_path):
    """RS doubling moves the per-attack mean by a quarter, however strong the weak attacks: the paper normalizes each attack."""
    pruning_json(tmp_path, "none__Hopper-v4.json", [(1000, 4500, 4500, 4500, 500)])
    pruning_json(tmp_path, "magnitude0.5__Hopper-v4.json", [(1000, 4500, 4500, 4500, 1000)])
    data = report.load_pruning(str(tmp_path))["Hopper-v4"]
    dense, pruned = (next(c for c in data if c["method"] == m) for m in ("none", "magnitude"))
    assert report.robust_scores(pruned, dense) == pytest.approx((1.0, 1.25, 1.0))
    # a dense agent with a return <= 0 under an attack has no ratio there: that attack is left out and the report says so
    pruning_json(tmp_path, "none__HalfCheetah-v4.json", [(1000, 500, 500, 500, -50)])
    pruning_json(tmp_path, "magnitude0.5__HalfCheetah-v4.json", [(1000, 600, 600, 600, -500)])
    data = report.load_pruning(str(tmp_path))
    hc = data["HalfCheetah-v4"]
    dense, pruned = (next(c for c in hc if c["method"] == m) for m in ("none", "magnitude"))
    assert report.robust_scores(pruned, dense) == pytest.approx((1.0, 1.2, 1.2))
    assert "under rs is <= 0: left out" in report.pruning_section(data)[0]


def test_pruning_methods_compare_on_a_shared_grid(tmp_path):
    """Magnitude's frontier has 3 seeds and 4 sparsities, the other methods 2 seeds at 0.3 and 0.7: the sweet-spot table
    compares them on sparsities 0.3, 0.7 and seeds 1, 2 (the dense agent too), then lists each on its own grid."""
    pruning_json(tmp_path, "none__Hopper-v4.json", [(1000, 500, 500, 500, 500)] * 2 + [(1000, 100, 100, 100, 100)])
    pruning_json(tmp_path, "magnitude0.3__Hopper-v4.json", [(1000, 500, 500, 500, 500)] * 3)
    pruning_json(tmp_path, "magnitude0.5__Hopper-v4.json", [(2000, 2000, 2000, 2000, 2000)] * 3)  # only on its own grid
    pruning_json(tmp_path, "magnitude0.7__Hopper-v4.json", [(1000, 600, 600, 600, 600)] * 2 + [(1000, 50, 50, 50, 50)])
    pruning_json(tmp_path, "random0.3__Hopper-v4.json", [(1000, 550, 550, 550, 550)] * 2)
    pruning_json(tmp_path, "random0.7__Hopper-v4.json", [(1000, 500, 500, 500, 500)] * 2)
    text, _ = report.pruning_section(report.load_pruning(str(tmp_path)))
    shared, own = text.split("all of its own")
    assert "sparsity 0.3, 0.7, seeds 1, 2," in shared
    # shared: magnitude's best is 0.7 (robust 600 / 500 = 1.2; seed 3's 50 is not in), worst seed 600 / dense's 500
    assert "| magnitude | 70% | 1.00 | 1.20 | 1.20 | 1.10 | 70% | 600 | 1.20 |" in shared
    assert "| random | 30% | 1.00 | 1.10 | 1.10 | 1.05 | 30% | 550 | 1.10 |" in shared
    assert "| magnitude | 50% | 2.00 |" in own and "random" not in own  # random's own grid is the shared one


def test_sweep_points_take_the_worst_attack_per_eps():
    def point(eps, natural, **attacks):
        return {"epsilon": eps, "natural": {"mean": natural}, "attacks": {a: {"mean": v} for a, v in attacks.items()}}

    doc = {"sweep": {"m.safetensors": [point(0.1, 900, random=800, mad=300), point(0.0, 1000, random=1000, mad=1000), point(0.2, 950, random=100, mad=200)]}}
    assert report.sweep_points(doc) == [(0.0, 1000, 1000, "random"), (0.1, 900, 300, "mad"), (0.2, 950, 100, "random")]


def test_two_timescale_figure_from_curves(tmp_path):
    def run(seed, offset):
        steps = list(range(0, 10000, 1000))
        return {"run": f"r{seed}", "seed": seed, "curves": {
            "charts/episodic_return": {"steps": steps, "values": [offset + s / 100 for s in steps]},
            "adversary/victim_grad_norm": {"steps": steps, "values": [1.0 / (1 + s) for s in steps]}}}

    for defense in ("single", "two_timescale"):
        doc = {"schema": "robust-rl/curves/1", "runs": [run(1, 0.0), run(2, 10.0)]}
        (tmp_path / f"two_timescale_adv__{defense}__eps_pi0.3__Hopper-v4.json").write_text(__import__("json").dumps(doc))
    (tmp_path / "barppo__kappa0.3__Hopper-v4.json").write_text("{}")  # other curves are not this figure's
    written = report.plot_two_timescale(str(tmp_path), str(tmp_path / "out"))
    assert [os.path.basename(p) for p in written] == ["two_timescale__Hopper-v4__eps_pi0.3.png"]
    assert os.path.getsize(written[0]) > 10_000
    grid = np.linspace(0, 9000, 4)
    mean, lo, hi = report.mean_band([run(1, 0.0), run(2, 10.0)], "charts/episodic_return", grid)
    assert np.allclose(mean, grid / 100 + 5) and np.allclose(lo, grid / 100) and np.allclose(hi, grid / 100 + 10)

    # every PNG carries the digest of its inputs: redrawing the same data writes nothing, new data makes it stale
    out = str(tmp_path / "out")
    planned = {}
    assert report.plot_two_timescale(str(tmp_path), out, planned) == [] and list(planned) == written
    assert report.stale_pngs(planned, out) == []
    assert report.plot_two_timescale(str(tmp_path), out) == []  # up to date: not drawn again
    doc = __import__("json").loads((tmp_path / "two_timescale_adv__single__eps_pi0.3__Hopper-v4.json").read_text())
    doc["runs"][0]["curves"]["charts/episodic_return"]["values"][3] += 1.0
    (tmp_path / "two_timescale_adv__single__eps_pi0.3__Hopper-v4.json").write_text(__import__("json").dumps(doc))
    changed = {}
    report.plot_two_timescale(str(tmp_path), out, changed)
    assert report.stale_pngs(changed, out) == [(written[0], "drawn from other inputs")]
    (tmp_path / "out" / "old.png").write_bytes(open(written[0], "rb").read())
    assert report.stale_pngs(changed, out)[1] == (os.path.join(out, "old.png"), "drawn from nothing")
    assert report.plot_two_timescale(str(tmp_path), out) == written  # redrawn with the new digest
    assert report.stale_pngs(changed, out) == [(os.path.join(out, "old.png"), "drawn from nothing")]

def test_pruning_plots_are_written(tmp_path, monkeypatch):
    pruning_json(tmp_path, "none__Hopper-v4.json", [(1000, 500, 500, 500, 500), (1000, 500, 500, 500, 500)])
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    text, plots = report.pruning_section(report.load_pruning(str(tmp_path)))
    report.plot_pruning(plots)  # the dense agent alone: no curve, no PNG, no "Plots:" line
    assert not (tmp_path / "report").exists() or not list((tmp_path / "report").iterdir())
    assert "Plots:" not in text
    pruning_json(tmp_path, "magnitude0.5__Hopper-v4.json", [(1000, 650, 650, 650, 650), (900, 650, 650, 650, 650)])
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    report.plot_pruning(report.pruning_section(report.load_pruning(str(tmp_path)))[1])
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert written == ["pruning_certificate__Hopper-v4.png", "pruning_frontier__Hopper-v4.png"]
    assert all((tmp_path / "report" / name).stat().st_size > 10_000 for name in written)


def test_pruning_strong_attacks_on_the_sweet_spots(tmp_path, monkeypatch, capsys):
    """`--sweet-spots` names the dense agent and each method's own sweet spot (what `pruning.sh strong` attacks); the
    SA-RL / PA-AD table normalizes by the dense agent under the same attack and takes the worst of six per seed."""
    folder = tmp_path / "pruning"
    (folder / "strong").mkdir(parents=True)
    pruning_json(folder, "none__Hopper-v4.json", [(1000, 500, 500, 500, 500), (1000, 500, 500, 500, 500)])
    pruning_json(folder, "magnitude0.3__Hopper-v4.json", [(1100, 500, 500, 500, 500), (1100, 500, 500, 500, 500)])
    pruning_json(folder, "magnitude0.5__Hopper-v4.json", [(1000, 650, 650, 650, 650), (1000, 650, 600, 650, 650)])  # the spot
    pruning_json(folder, "magnitude0.5__interval1__Hopper-v4.json", [(5000, 5000, 5000, 5000, 5000)])  # never a spot
    pruning_json(folder, "random0.7__Hopper-v4.json", [(900, 400, 400, 400, 400)])
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    report.main(report.Args(sweet_spots="Hopper-v4"))
    assert capsys.readouterr().out.split() == ["none", "magnitude0.5", "random0.7"]
    with pytest.raises(SystemExit) as e:
        report.main(report.Args(sweet_spots="Walker2d-v4"))
    assert e.value.code == 2 and "error: no dense (`none`) pruning result for Walker2d-v4" in capsys.readouterr().err

    def strong(name, seeds):  # seeds: [(seed, natural, sa_rl, pa_ad)]
        eval_json(folder / "strong", name, [{"model": f"m__{k}.safetensors", "natural": {"mean": n},
                                             "attacks": {"sa_rl": {"mean": a}, "pa_ad": {"mean": b}}} for k, n, a, b in seeds])
    strong("none__Hopper-v4.json", [(1, 1000, 400, 200), (2, 1000, 400, 300)])
    strong("magnitude0.5__Hopper-v4.json", [(1, 1000, 700, 500), (2, 1000, 500, 700)])
    text, _ = report.pruning_section(report.load_pruning(str(folder)))
    # SA-RL 600 / 400 = 1.50, PA-AD 600 / 250 = 2.40; worst of 6: seed 1 min(650, 700, 500) = 500, seed 2 min(600, 500, 700) = 500
    assert "| magnitude | 0.5 | yes | 2 | 1000 +- 0 | 600 +- 100 | 600 +- 100 | 1.50 | 2.40 | 500 +- 0 |" in text
    assert "| none | 0 | yes | 2 | 1000 +- 0 | 400 +- 0 | 250 +- 50 | 1.00 | 1.00 | 250 +- 50 |" in text  # worst: 200 and 300
    assert "random | 0.7 | " in text and "| random | 0.7 | yes" not in text  # no strong JSON: not in the table


def eval_json(folder, name, results):
    """An eval_attacks.py JSON with its provenance header: folder/name."""
    doc = {"command": "eval_attacks.py ...", "git_commit": "0" * 40, "date": "2026-11-22T00:00:00+00:00", "machine": "test", "results": results}
    (folder / name).write_text(__import__("json").dumps(doc))


def prmdp_json(folder, name, seeds):
    """seeds: [(natural, action_mix)] -> an action_mix eval JSON named as the PR-MDP grid's."""
    eval_json(folder, name, [{"model": f"m__{i + 1}.safetensors", "natural": {"mean": n}, "attacks": {"action_mix": {"mean": a}}} for i, (n, a) in enumerate(seeds)])


def test_prmdp_table_rows_budgets_and_training_mark(tmp_path):
    prmdp_json(tmp_path, "none__Hopper-v4__vs0.3.json", [(3000, 60)])
    prmdp_json(tmp_path, "two_timescale__eps_pi0.3__Hopper-v4__vs0.3.json", [(2000, 1000), (2200, 1400), (2400, 1800)])
    prmdp_json(tmp_path, "two_timescale__eps_pi0.3__Hopper-v4__vs0.1.json", [(2000, 1500), (2200, 1500), (2400, 1500)])
    prmdp_json(tmp_path, "single__eps_pi0.1__Hopper-v4__vs0.1.json", [(2500, 700), (2500, 900)])
    prmdp_json(tmp_path, "not_a_grid_file.json", [(1, 1)])
    data = report.load_prmdp(str(tmp_path))
    assert set(data) == {"Hopper-v4"} and len(data["Hopper-v4"]) == 3
    rows = [line for line in report.prmdp_section(data).splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| none (PPO zoo agent)", "| single", "| two_timescale"]  # defense order
    assert rows[0].endswith("| 3000 |  | 60 |")  # one seed: no s.e.; no attack at 0.1 yet
    assert rows[1].endswith("| 2500 +- 0 | 800 +- 100 * |  |")  # mean +- s.e.; * = the training budget
    assert rows[2].endswith("| 3 | 2200 +- 115 | 1500 +- 0 | 1400 +- 231 * |")
    assert report.prmdp_section({}) == "No PR-MDP results yet."


def sumo_json(folder, name, seeds, features=7):
    """seeds: [(natural (win, draw, loss), attacker win rate, w2)] -> an arena eval JSON named as the sumo grid's, W2 over
    `features` features (--stealth-features)."""
    eval_json(folder, name, [{"model": f"m__{i + 1}.safetensors", "episodes": 200, "natural": dict(zip(("win", "draw", "loss"), nat)),
                              "attacks": {"action_mix": {"attacker_win_rate": a}},
                              "stealth": {"w2_squared": w2, "floor": 0.01, "features": list(range(features))}} for i, (nat, a, w2) in enumerate(seeds)])


def test_sumo_table_rows_rates_and_training_mark(tmp_path):
    sumo_json(tmp_path, "benign__sumo-puck__vs0.3.json", [((0.2, 0.6, 0.2), 0.3, 0.5), ((0.4, 0.4, 0.2), 0.5, 0.7)])
    sumo_json(tmp_path, "benign__sumo-puck__vs1.0.json", [((0.2, 0.6, 0.2), 0.9, 2.0), ((0.4, 0.4, 0.2), 0.7, 3.0)])
    sumo_json(tmp_path, "two_timescale_eps0.3__sumo-puck__vs0.3.json", [((0.5, 0.5, 0.0), 0.1, 0.2)])
    sumo_json(tmp_path, "fictitious_play__sumo-puck__vs1.0.json", [((0.5, 0.5, 0.0), 0.6, 1.0)])
    sumo_json(tmp_path, "not_a_grid_file.json", [((1, 0, 0), 0, 0)])
    data = report.load_sumo(str(tmp_path))
    assert set(data) == {"sumo-puck"} and len(data["sumo-puck"]) == 3
    section = report.sumo_section(data)
    assert "sum over the 7 most important observation features" in section  # what the evaluations used
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| self-play (phase 1)", "| fictitious_play", "| two_timescale"]  # group order
    assert rows[0] == "| self-play (phase 1) |  | 2 | 0.30 / 0.20 / 0.50 | 0.40 +- 0.10 | 0.6 [0.01] | 0.80 +- 0.10 | 2.5 [0.01] |"
    assert rows[1].endswith("| 1 | 0.50 / 0.00 / 0.50 |  |  | 0.60 | 1 [0.01] |")  # not attacked at 0.3 yet; one seed: no s.e.
    assert rows[2].startswith("| two_timescale | 0.3 | 1 |") and "| 0.10 * |" in rows[2]  # * = the training budget
    assert report.sumo_section({}) == "No sumo results yet."
    assert "†" not in section  # the natural rows of the self-play victims agree between their two JSONs


def test_sumo_table_marks_natural_rows_that_differ_between_evaluations(tmp_path):
    sumo_json(tmp_path, "benign__sumo-ant__vs0.3.json", [((0.5, 0.1, 0.4), 0.3, 0.5)])
    sumo_json(tmp_path, "benign__sumo-ant__vs1.0.json", [((0.4, 0.2, 0.4), 0.3, 0.5)])  # the same victim's games, other outcomes
    section = report.sumo_section(report.load_sumo(str(tmp_path)))
    assert "| self-play (phase 1) |  | 1 | 0.50 / 0.40 / 0.10 † |" in section
    assert ("† The natural games differ between the group's evaluations (the lowest budget's shown), as when they ran on different CPUs "
            "(docs/sumo.md): self-play (phase 1): 0.500 / 0.400 / 0.100 at 0.3 (CPU not recorded), 0.400 / 0.400 / 0.200 at 1 (CPU not recorded).") in section


def test_sumo_dagger_note_names_each_natural_row_s_evaluations_with_attack_seed_and_cpu(tmp_path):
    import json

    sumo_json(tmp_path, "benign__sumo-puck__vs0.3.json", [((0.0, 0.99, 0.01), 0.3, 0.5)])
    sumo_json(tmp_path, "benign__sumo-puck__vs1.0.json", [((0.0, 0.99, 0.01), 0.9, 0.5)])
    sumo_json(tmp_path, "benign__sumo-puck__vs0.3__attack_seed1.json", [((0.0, 1.0, 0.0), 0.2, 0.5)])
    path = tmp_path / "benign__sumo-puck__vs0.3__attack_seed1.json"
    doc = json.loads(path.read_text())
    doc["results"][0]["attack_seed"] = 1  # what eval_attacks.py records per result
    path.write_text(json.dumps(dict(doc, machine="vm x86_64 2 cpu, Xeon")))
    section = report.sumo_section(report.load_sumo(str(tmp_path)))
    assert ("self-play (phase 1): 0.000 / 0.010 / 0.990 at 0.3 (CPU not recorded), 1 (CPU not recorded), "
            "0.000 / 0.000 / 1.000 at 0.3 (attack seed 1, Xeon).") in section


def test_reference_columns_come_from_a_shared_ref_json(tmp_path, monkeypatch):
    """A cell's reference columns come from a JSON of several agents (one `--attacks ref` call), matched by file name."""
    import json

    doc = {"command": "eval_attacks.py ...", "git_commit": "0" * 40, "date": "2026-11-22T00:00:00+00:00", "machine": "test"}
    full = dict(doc, results=[{"model": "a/m__1.safetensors", "epsilon": 0.075, "natural": {"mean": 1000},
                               "attacks": {n: {"mean": 500 + i} for i, n in enumerate(report.SIX)}}])
    ref = dict(doc, results=[{"model": "zoo/other.safetensors", "attacks": {"sa_rl_ref": {"mean": 1}, "pa_ad_ref": {"mean": 2}}},
                             {"model": "elsewhere/m__1.safetensors", "attacks": {"sa_rl_ref": {"mean": 700}, "pa_ad_ref": {"mean": 800}}}])
    (tmp_path / "full.json").write_text(json.dumps(full))
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    monkeypatch.setattr(report, "RESULTS", str(tmp_path))
    monkeypatch.setattr(report, "CELLS", [report.Cell("Hopper-v4", "PPO", full="full.json", ref="ref.json")])
    summary, readme, _ = report.build(report.Args(plots=False, reps=100))
    row = next(line for line in summary.splitlines() if line.startswith("| Hopper-v4 | PPO"))
    assert row.endswith("| 500 (random) | -0.50 | 700 | 800 | 3081 / 79 |")  # the worst stays over the six
    assert "PPO, Hopper-v4, reference attacks: `eval_attacks.py ...`" in summary
    assert report.result_for(ref, "x/other.safetensors")["attacks"]["sa_rl_ref"]["mean"] == 1 and report.result_for(ref, "none") is None


def test_sumo_table_takes_the_best_of_several_attackers_per_victim(tmp_path):
    """Attack seed 1's JSON beside seed 0's: per victim seed the attacker that won more (and its W2), the count in brackets."""
    sumo_json(tmp_path, "single_eps0.3__sumo-puck__vs0.3.json", [((0.0, 0.5, 0.5), 0.0, 1.0), ((0.0, 0.5, 0.5), 0.9, 2.0)])
    sumo_json(tmp_path, "single_eps0.3__sumo-puck__vs0.3__attack_seed1.json", [((0.0, 0.5, 0.5), 0.8, 5.0), ((0.0, 0.5, 0.5), 0.7, 9.0)])
    data = report.load_sumo(str(tmp_path))
    assert [len(ds) for ds in data["sumo-puck"][("single", 0.3)].values()] == [2]
    section = report.sumo_section(data)
    assert "| single | 0.3 | 2 | 0.00 / 0.50 / 0.50 | 0.85 +- 0.05 (2) * | 3.5 [0.01] |" in section  # 0.8 (seed 1's), 0.9 (seed 0's)
    assert "†" not in section


def test_sumo_per_seed_tables_name_every_attacker_and_the_natural_loss_per_victim_seed(tmp_path):
    """One block per (env, budget): per victim seed the better attacker, each attacker (attack seed 0 first) and the
    natural loss; a group without some seed shows '-' there (RESULTS holds a marker per block name: test_generated_sections_are_current)."""
    sumo_json(tmp_path, "single_eps0.3__sumo-puck__vs0.3.json", [((0.0, 0.5, 0.5), 0.0, 1.0), ((0.0, 0.25, 0.75), 0.9, 2.0)])
    sumo_json(tmp_path, "single_eps0.3__sumo-puck__vs0.3__attack_seed1.json", [((0.0, 0.5, 0.5), 0.8, 5.0), ((0.0, 0.25, 0.75), 0.7, 9.0)])
    sumo_json(tmp_path, "benign__sumo-puck__vs0.3.json", [((0.1, 0.8, 0.1), 0.3, 0.5)])  # seed 1 only
    sumo_json(tmp_path, "benign__sumo-puck__vs1.0.json", [((0.1, 0.8, 0.1), 1.0, 0.5)])
    blocks = report.sumo_seeds_sections(report.load_sumo(str(tmp_path)))
    assert list(blocks) == ["sumo-puck seeds 0.3", "sumo-puck seeds 1"]
    table = blocks["sumo-puck seeds 0.3"]
    assert table.startswith("Per victim seed 1 / 2 (") and "each one's in brackets per victim, by attack seed" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == ["| self-play (phase 1) |  | 0.300 / - | 0.100 / - |",  # one attacker: no brackets
                    "| single | 0.3 | 0.800 / 0.900 (0.000, 0.800; 0.900, 0.700) | 0.500 / 0.750 |"]
    assert "in brackets" not in blocks["sumo-puck seeds 1"]  # one attacker per victim: no brackets
    assert blocks["sumo-puck seeds 1"].splitlines()[-1] == "| self-play (phase 1) |  | 1.000 | 0.100 |"
