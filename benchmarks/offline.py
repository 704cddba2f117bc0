"""Offline benchmark: top-N ranking and rating error of our models beside reference methods.

    .venv/bin/python benchmarks/offline.py [--seeds 0,1,2] [--surprise] [--json out.json]

Protocol (issue 13): MovieLens 100K (benchmarks/datasets.py), a seeded random 80/20 split per
seed; top-10 over the full catalogue with the movies seen in training excluded; relevant = test
rating >= 4; every test user with a relevant movie. Per seed, in one run: our item-item and
user-user (defaults, and with the ranking scorer tuned on a validation split carved from that
seed's training part only, `models/tuning.py`), plain cosine item and user kNN (k=40, binary,
summed similarity), numpy EASE (lambda=500, binary), `implicit`'s item kNN when it is installed,
and the most-popular list. Metrics: NDCG@10, P@10, R@10, catalogue coverage, popularity share,
RMSE (models that predict ratings), fit and scoring CPU seconds (scoring = the top-10 lists of
every evaluated user). Printed as mean +- standard deviation over the seeds.

`--surprise` adds Surprise's KNNBaseline and SVD RMSE in its own virtualenv,
~/.cache/movierec/bench-venv, created on first use (it needs numpy<2 and Cython to build).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import EASE, CosineKNN, ImplicitItemKNN, implicit_available
from datasets import movielens_100k
from movierec_recommender.data import RatingsData
from movierec_recommender.evaluation import ranking_metrics, rating_metrics, time_split
from movierec_recommender.models import MostPopular, build_model
from movierec_recommender.models.tuning import tune_ranking

BENCH_VENV = Path.home() / ".cache" / "movierec" / "bench-venv"
SURPRISE_PIN = "scikit-surprise==1.1.5"
OURS = ("movierec item-item (tuned)", "movierec user-user (tuned)")
PLAIN = ("plain cosine item kNN (k=40, binary)", "plain cosine user kNN (k=40, binary)")
METRICS = ("ndcg@10", "precision@10", "recall@10", "coverage", "popular_share", "rmse")
TIMES = ("fit_s", "score_s", "tune_s")

# Runs inside the bench venv: fits each Surprise model on train.csv, predicts test.csv.
SURPRISE_WORKER = r"""
import gc, json, sys, time
import numpy as np, pandas as pd
from surprise import SVD, Dataset, KNNBaseline, KNNBasic, KNNWithMeans, Reader

folder, repeats = sys.argv[1], int(sys.argv[2])
train = pd.read_csv(f"{folder}/train.csv", dtype={"user_id": str, "movie_id": str})
test = pd.read_csv(f"{folder}/test.csv", dtype={"user_id": str, "movie_id": str})
lo, hi = float(train.rating.min()), float(train.rating.max())
trainset = Dataset.load_from_df(train[["user_id", "movie_id", "rating"]], Reader(rating_scale=(lo, hi))).build_full_trainset()
pairs = list(zip(test.user_id, test.movie_id, test.rating))
item = {"user_based": False}
models = {
    "surprise KNNBasic (item, msd)": lambda: KNNBasic(k=40, sim_options={**item, "name": "msd"}, verbose=False),
    "surprise KNNWithMeans (item, pearson)": lambda: KNNWithMeans(k=40, sim_options={**item, "name": "pearson"}, verbose=False),
    "surprise KNNBaseline (item, pearson_baseline)": lambda: KNNBaseline(k=40, sim_options={**item, "name": "pearson_baseline"}, verbose=False),
    "surprise KNNBaseline (user, pearson_baseline)": lambda: KNNBaseline(k=40, sim_options={"user_based": True, "name": "pearson_baseline"}, verbose=False),
    "surprise SVD": lambda: SVD(random_state=0),
}
out = {}
for name, make in models.items():
    t = {"fit_s": [], "predict_s": [], "fit_wall_s": [], "predict_wall_s": []}
    for _ in range(repeats):
        algo = make()
        gc.collect()
        c, w = time.process_time(), time.perf_counter(); algo.fit(trainset)
        t["fit_s"].append(time.process_time() - c); t["fit_wall_s"].append(time.perf_counter() - w)
        c, w = time.process_time(), time.perf_counter(); preds = algo.test(pairs)
        t["predict_s"].append(time.process_time() - c); t["predict_wall_s"].append(time.perf_counter() - w)
    out[name] = {**t, "pred": [p.est for p in preds]}
json.dump(out, open(f"{folder}/surprise.json", "w"))
"""


def ensure_bench_venv() -> Path:
    """The Surprise virtualenv's python, created once: numpy<2 + Cython, then Surprise from sdist."""
    python = BENCH_VENV / "bin" / "python"
    probe = [str(python), "-c", "import surprise, pandas"]
    if python.exists() and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return python
    if python.exists():  # a venv from an earlier layout: top it up rather than rebuild
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run(
            [
                *pip,
                "--no-build-isolation",
                SURPRISE_PIN,
                "numpy<2",
                "pandas<3",
                "cython>=3",
                "setuptools",
                "wheel",
            ],
            check=False,
        )
        if subprocess.run(probe, check=False, capture_output=True).returncode == 0:
            return python
    print(f"creating {BENCH_VENV} (scikit-surprise builds from source)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(BENCH_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    base = ["numpy<2", "pandas<3", "cython>=3", "setuptools", "wheel"]
    subprocess.run([*pip, *base], check=True)
    subprocess.run([*pip, "--no-build-isolation", SURPRISE_PIN, *base], check=True)
    return python


def write_split(folder: Path, train: RatingsData, test: RatingsData) -> None:
    import pandas as pd

    for name, part in (("train", train), ("test", test)):
        pd.DataFrame(
            {"user_id": part.user_ids, "movie_id": part.movie_ids, "rating": part.ratings}
        ).to_csv(folder / f"{name}.csv", index=False)


def run_surprise(python: Path, folder: Path) -> dict[str, dict[str, Any]]:
    """One round of every Surprise model in a fresh worker: times as one-element lists."""
    subprocess.run([str(python), "-c", SURPRISE_WORKER, str(folder), "1"], check=True)
    out: dict[str, dict[str, Any]] = json.loads((folder / "surprise.json").read_text())
    return out


def random_split(data: RatingsData, seed: int) -> tuple[RatingsData, RatingsData]:
    """The seeded random 80/20 split (timestamps dropped, so `time_split` permutes)."""
    no_time = RatingsData(
        data.user_vocab, data.user_codes, data.movie_vocab, data.movie_codes, data.ratings
    )
    return time_split(no_time, 0.2, seed=seed)


def _cpu(fn: Any) -> tuple[Any, float]:
    gc.collect()
    started = time.process_time()
    out = fn()
    return out, time.process_time() - started


def measure(model: Any, train: RatingsData, test: RatingsData, fit_s: float) -> dict[str, float]:
    """Ranking metrics (timed: the top-10 lists are most of it), RMSE when the model predicts."""
    ranking, score_s = _cpu(lambda: ranking_metrics(model, train, test, k=10))
    row = {**ranking, "fit_s": fit_s, "score_s": score_s}
    if hasattr(model, "predict"):
        row["rmse"] = rating_metrics(test.ratings, model.predict(test.user_ids, test.movie_ids))[
            "rmse"
        ]
    return row


def run_seed(data: RatingsData, seed: int, surprise: Path | None) -> dict[str, dict[str, float]]:
    train, test = random_split(data, seed)
    rows: dict[str, dict[str, float]] = {}
    for algo in ("item-item", "user-user"):
        model, fit_s = _cpu(lambda a=algo: build_model(a).fit(train))
        rows[f"movierec {algo} (defaults)"] = measure(model, train, test, fit_s)
        tuned, tune_s = _cpu(lambda a=algo: tune_ranking(a, train, seed=1000 + seed))
        model, fit_s = _cpu(lambda a=algo, c=tuned.config: build_model(a, c).fit(train))
        row = measure(model, train, test, fit_s)
        row["tune_s"] = tune_s
        row["validation ndcg@10"] = tuned.best
        rows[f"movierec {algo} (tuned)"] = row
        print(
            f"seed {seed} {algo}: tuned {tuned.config.model_dump(include=set(tuned.trials[0][0]))}",
            file=sys.stderr,
            flush=True,
        )
    baselines: list[Any] = [CosineKNN("item", 40), CosineKNN("user", 40), EASE(500.0)]
    if implicit_available() is None:
        baselines.append(ImplicitItemKNN(40))
    for base in baselines:
        fitted, fit_s = _cpu(lambda b=base: b.fit(train))
        rows[base.name] = measure(fitted, train, test, fit_s)
    pop, fit_s = _cpu(lambda: MostPopular().fit(train))
    rows["most popular"] = measure(pop, train, test, fit_s)
    rows["most popular"]["rmse"] = float("nan")  # it predicts the global mean: not a rating model
    if surprise is not None:
        with tempfile.TemporaryDirectory() as tmp:
            write_split(Path(tmp), train, test)
            for name, out in run_surprise(surprise, Path(tmp)).items():
                rows[name] = {
                    "rmse": rating_metrics(test.ratings, np.asarray(out["pred"]))["rmse"],
                    "fit_s": float(out["fit_s"][0]),
                }
    return rows


def summarise(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """model -> metric -> [mean, standard deviation, min, max] over the seeds."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in per_seed[0]:
        keys = set().union(*(rows[name] for rows in per_seed))
        out[name] = {}
        for key in sorted(keys):
            v = np.array([rows[name].get(key, np.nan) for rows in per_seed], dtype=np.float64)
            if np.isnan(v).all():
                continue
            out[name][key] = [float(v.mean()), float(v.std()), float(v.min()), float(v.max())]
    return out


def _cell(stats: dict[str, list[float]], key: str, digits: int = 4) -> str:
    if key not in stats:
        return "-"
    mean, sd = stats[key][:2]
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def print_table(summary: dict[str, dict[str, list[float]]], seeds: list[int]) -> None:
    print(f"\n## random 80/20 splits, seeds {seeds}: mean ± standard deviation over the seeds")
    print(
        "| model | NDCG@10 | P@10 | R@10 | coverage | popular share | RMSE | fit CPU s "
        "| score CPU s | tune CPU s |"
    )
    print("|---|" + "---:|" * 9)
    for name, st in summary.items():
        cells = [_cell(st, m) for m in METRICS]
        cells[3], cells[4] = _cell(st, "coverage", 3), _cell(st, "popular_share", 3)
        times = [_cell(st, t, 2) if t in st else "-" for t in TIMES]
        print(f"| {name} | " + " | ".join(cells + times) + " |")
    best = max(OURS, key=lambda k: summary[k]["ndcg@10"][0])
    plain = max(PLAIN, key=lambda k: summary[k]["ndcg@10"][0])
    nd = {k: summary[k]["ndcg@10"][0] for k in (*OURS, plain)}
    print(
        f"target: best {best} NDCG@10 {nd[best]:.4f} (>= 0.37: "
        f"{'met' if nd[best] >= 0.37 else 'missed'}); both above the best plain cosine kNN "
        f"({plain}, {nd[plain]:.4f}): "
        f"{'met' if min(nd[k] for k in OURS) > nd[plain] else 'missed'}"
    )
    rmse_best = min(summary[k]["rmse"][0] for k in OURS)
    print(
        f"target: best RMSE {rmse_best:.4f} (<= 0.905: {'met' if rmse_best <= 0.905 else 'missed'})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="one random 80/20 split per seed")
    ap.add_argument("--surprise", action="store_true", help="add Surprise's RMSE (own venv)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    surprise = ensure_bench_venv() if args.surprise else None
    data = RatingsData.from_csv(movielens_100k())
    print(f"MovieLens 100K: {len(data):,} ratings, {data.n_users} users, {data.n_movies} movies")
    missing = implicit_available()
    if missing is not None:
        print(f"implicit not installed ({missing}): its item kNN is left out")
    load = [round(os.getloadavg()[0], 1)]
    per_seed = []
    for seed in seeds:
        per_seed.append(run_seed(data, seed, surprise))
        load.append(round(os.getloadavg()[0], 1))
    summary = summarise(per_seed)
    print_table(summary, seeds)
    print(f"load average during the run: {min(load)}-{max(load)}")
    if args.json:
        args.json.write_text(
            json.dumps({"seeds": seeds, "summary": summary, "per_seed": per_seed}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
