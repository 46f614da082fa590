"""The learning router on a workload with hidden skill, over several seeds.

    python benchmarks/learning.py            # 5 seeds x 2,000 tasks (a quarter of an hour)
    python benchmarks/learning.py --quick    # 2 seeds x 200 tasks, to check the script runs

Per seed, on the same tasks and luck (athena_orch.learning.simulate):
- success rate after all tasks of "thompson" (routed with router.decide, so its log holds
  every candidate's propensity), "oracle" (knows the matrix) and "weighted", and the
  regret curves against the oracle's run;
- off-policy estimates (IPS, SNIPS, DR) from the thompson log of two policies that were
  not run that way: uniform over the candidates, and greedy on the hidden matrix; each
  compared with the success rate of actually running it (a uniform random choice among
  free agents; the oracle);
- route_batch decisions/s, weighted vs thompson, on run.py's routing shape.

Prints a table, writes benchmarks/learning.json (or --out) and benchmarks/learning.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

import athena_orch as ao
from athena_orch.analysis import decision_outcomes, evaluate_policy, greedy_policy, uniform_policy
from athena_orch.learning import learning_curve, simulate
from athena_orch.workload import skill_workload

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import team  # noqa: E402  (the routing benchmark's team of agents)

SIZES = {"full": {"seeds": 5, "tasks": 2000, "agents": 1000, "batch": 10_000},
         "quick": {"seeds": 2, "tasks": 200, "agents": 100, "batch": 1000}}
CHECKPOINTS = (100, 250, 500, 1000, 2000)


def uniform_runner(seed: int):
    """A uniform random choice among the agents with a free slot (the truth for the
    uniform policy's off-policy estimate)."""
    rng = np.random.default_rng(10_000 + seed)

    def choose(task_type: str, free: dict[str, int]) -> str | None:
        open_ = sorted(a for a, k in free.items() if k > 0)
        return open_[int(rng.integers(len(open_)))] if open_ else None
    return choose


def one_seed(seed: int, n_tasks: int) -> dict:
    wl = skill_workload(n_tasks=n_tasks, seed=seed)
    runs, seconds = {}, {}
    for name, policy, route in (("oracle", "oracle", "batch"),
                                ("weighted", "weighted", "batch"),
                                ("thompson", "thompson", "decide"),
                                ("uniform", uniform_runner(seed), "batch")):
        with ao.connect() as orch:
            start = time.perf_counter()
            runs[name] = simulate(orch, wl, policy, seed=seed, route=route)
            seconds[name] = time.perf_counter() - start
            if name == "thompson":
                log = decision_outcomes(orch)
    truths = {"uniform": runs["uniform"]["success"].mean(),
              "greedy": runs["oracle"]["success"].mean()}
    targets = {"uniform": uniform_policy(), "greedy": greedy_policy(wl.success)}
    estimates = []
    for name, policy in targets.items():
        table = evaluate_policy(log, policy, seed=seed)
        for row in table.itertuples():
            estimates.append({"seed": seed, "policy": name, "estimator": row.estimator,
                              "estimate": row.estimate, "low": row.low, "high": row.high,
                              "truth": truths[name],
                              "covered": bool(row.low <= truths[name] <= row.high),
                              "unsupported": row.unsupported, "effective_n": row.effective_n})
    curves = {name: learning_curve(out, runs["oracle"]) for name, out in runs.items()}
    return {"seed": seed, "success": {k: float(v["success"].mean()) for k, v in runs.items()},
            "seconds": seconds, "estimates": estimates,
            "regret": {k: [float(c["regret"].iloc[min(n, len(c)) - 1]) for n in CHECKPOINTS
                           if n <= n_tasks] for k, c in curves.items()},
            "curves": {k: c["regret"].to_numpy() for k, c in curves.items()}}


def throughput(n_agents: int, n_batch: int) -> dict:
    """route_batch decisions/s under each policy, the same team and tasks, one run."""
    rng = np.random.default_rng(2)
    kinds = [f"type{k}" for k in range(5)]
    tasks = [{"id": str(i), "task_type": kinds[i % 5], "requirements": list(rng.choice(
        [f"skill{k}" for k in range(20)], size=rng.integers(0, 3), replace=False))}
        for i in range(n_batch)]
    rates = {}
    with ao.connect() as orch:
        team(orch, n_agents)
        orch.router.route_batch(tasks[:10])  # warm the agent table
        for policy in ("weighted", "thompson", "weighted", "thompson"):  # best of two each
            orch.router.policy = policy
            orch.router.seed = 1
            start = time.perf_counter()
            orch.router.route_batch(tasks)
            rates[policy] = max(rates.get(policy, 0.0), n_batch / (time.perf_counter() - start))
    return rates


def spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def plot(results: list[dict], path: Path) -> None:
    from athena_orch.viz import plot_regret
    curves = {name: np.mean([r["curves"][name] for r in results], axis=0)
              for name in ("weighted", "uniform", "thompson")}
    ax = plot_regret(curves, title=f"Regret against the oracle, mean of {len(results)} seeds")
    ax.figure.savefig(path, dpi=100, bbox_inches="tight")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--out", default=str(HERE / "learning.json"))
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    results = []
    for seed in range(1, size["seeds"] + 1):
        results.append(one_seed(seed, size["tasks"]))
        r = results[-1]
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["success"].items())
              + " | " + ", ".join(f"{k} {v:.0f}s" for k, v in r["seconds"].items()), flush=True)
    rates = throughput(size["agents"], size["batch"])
    success = {k: [r["success"][k] for r in results] for k in results[0]["success"]}
    gap_oracle = [o - t for o, t in zip(success["oracle"], success["thompson"])]
    over_weighted = [t - w for t, w in zip(success["thompson"], success["weighted"])]
    estimates = pd.DataFrame([e for r in results for e in r["estimates"]])
    coverage = estimates.groupby(["policy", "estimator"], sort=False).agg(
        covered=("covered", "sum"), seeds=("covered", "size"), estimate=("estimate", "mean"),
        truth=("truth", "mean"), width=("high", "mean"), unsupported=("unsupported", "mean"))
    coverage["width"] = (estimates.groupby(["policy", "estimator"], sort=False)
                         .apply(lambda f: (f["high"] - f["low"]).mean()))
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, DuckDB {duckdb.__version__}")
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    n = size["tasks"]
    print(f"\nathena-orch {ao.__version__} learning benchmark, {when}, {machine}")
    print(f"{len(results)} seeds x {n:,} tasks, 6 specialist agents x 4 task types")
    print(f"{'figure':52s} {'mean ± sd':>16s}  goal")
    for k in ("oracle", "thompson", "weighted", "uniform"):
        print(f"{'success rate, ' + k:52s} {spread(success[k]):>16s}")
    print(f"{'oracle - thompson (points)':52s} {spread([100 * g for g in gap_oracle]):>16s}"
          "  <= 5")
    print(f"{'thompson - weighted (points)':52s} {spread([100 * g for g in over_weighted]):>16s}"
          "  >= 10")
    checkpoints = [c for c in CHECKPOINTS if c <= n]
    for k in ("thompson", "weighted", "uniform"):
        at = np.array([r["regret"][k] for r in results])
        print(f"{'regret vs oracle, ' + k:52s} "
              + ", ".join(f"{c}: {m:.0f}" for c, m in zip(checkpoints, at.mean(axis=0))))
    print(f"\n{'off-policy estimate from the thompson log':30s} {'estimate':>9s} {'truth':>7s} "
          f"{'CI width':>8s} {'unsupported':>11s} {'truth in 95% CI':>16s}")
    for (policy, estimator), row in coverage.iterrows():
        print(f"{policy + ' ' + estimator:30s} {row.estimate:9.3f} {row.truth:7.3f} "
              f"{row.width:8.3f} {row.unsupported:11.3f} {int(row.covered)} of {int(row.seeds)}")
    ratio = rates["thompson"] / rates["weighted"]
    print(f"\nroute_batch {size['batch']:,} tasks x {size['agents']:,} agents: weighted "
          f"{rates['weighted']:,.0f}/s, thompson {rates['thompson']:,.0f}/s, ratio {ratio:.2f}"
          " (goal >= 0.5)")
    seconds = {k: float(np.mean([r["seconds"][k] for r in results])) for k in success}
    print("seconds per run of " + f"{n:,} tasks: "
          + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    if not args.quick:
        plot(results, HERE / "learning.png")
    Path(args.out).write_text(json.dumps({
        "date": when, "machine": machine, "quick": args.quick, "seeds": len(results),
        "tasks": n, "success": success, "oracle_minus_thompson": gap_oracle,
        "thompson_minus_weighted": over_weighted,
        "regret": {"checkpoints": checkpoints,
                   **{k: [r["regret"][k] for r in results] for k in success}},
        "off_policy": estimates.to_dict("records"),
        "coverage": coverage.reset_index().to_dict("records"),
        "route_batch": {"tasks": size["batch"], "agents": size["agents"], **rates,
                        "ratio": ratio},
        "seconds_per_run": seconds}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
