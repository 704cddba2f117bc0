"""Offline benchmark: our kNN models beside Surprise's on the same data and the same splits.

    .venv/bin/python benchmarks/offline.py [--splits time,random] [--repeats 3] [--json out.json]

Data: MovieLens 100K (real ratings; see benchmarks/datasets.py). Splits: `time` = the latest 20% of
ratings by global time order (what `movierec train` does; most test users are new, so it mostly
measures fallbacks), `random` = a seeded 80/20 split (the setting Surprise's own benchmarks use).
Surprise (scikit-surprise) runs in its own virtualenv, ~/.cache/movierec/bench-venv, created on
first use (it needs numpy<2 and Cython to build). Every model is scored by our metric code on the
same predictions.

Timing: `--repeats` rounds; each round fits and predicts every model of ours once and then every
Surprise model once (a fresh worker process per round), so both sides see the same machine
state and a change in load during the run hits both. Reported times are medians over the rounds,
in CPU seconds of the process (the fair clock on a shared machine; wall seconds too), and the
speed-up is the median over rounds of (KNNBaseline's fit + predict) / (ours), each round's pair
measured back to back. Only one model runs at a time; metrics are computed outside the timed
parts, and garbage is collected before each timed fit. The load average is recorded per split.
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
from datasets import movielens_100k
from movierec_recommender.data import RatingsData
from movierec_recommender.evaluation import ranking_metrics, rating_metrics, time_split
from movierec_recommender.models import MostPopular, build_model

BENCH_VENV = Path.home() / ".cache" / "movierec" / "bench-venv"
SURPRISE_PIN = "scikit-surprise==1.1.5"
# CPU seconds (process_time: fair on a shared machine) and wall seconds, median of the rounds
TIMES = ("fit_s", "predict_s", "fit_wall_s", "predict_wall_s")
REFERENCE = "surprise KNNBaseline (item, pearson_baseline)"
OURS = ("movierec item-item", "movierec user-user")

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


def known_users_only(train: RatingsData, test: RatingsData) -> RatingsData:
    """The test ratings of users who also have training ratings (personalisation is possible)."""
    return test.take(np.isin(test.user_ids, np.unique(train.user_ids)))


def fit_predict_timed(
    algo: str, train: RatingsData, test: RatingsData
) -> tuple[Any, np.ndarray, dict[str, float]]:
    """One fit + predict of our model: (model, predictions, CPU and wall seconds)."""
    gc.collect()
    c, w = time.process_time(), time.perf_counter()
    model = build_model(algo).fit(train)
    fit_s, fit_wall_s = time.process_time() - c, time.perf_counter() - w
    c, w = time.process_time(), time.perf_counter()
    pred = model.predict(test.user_ids, test.movie_ids)
    t = {
        "fit_s": fit_s,
        "fit_wall_s": fit_wall_s,
        "predict_s": time.process_time() - c,
        "predict_wall_s": time.perf_counter() - w,
    }
    return model, pred, t


def run_surprise(python: Path, folder: Path) -> dict[str, dict[str, Any]]:
    """One round of every Surprise model in a fresh worker: times as one-element lists."""
    subprocess.run([str(python), "-c", SURPRISE_WORKER, str(folder), "1"], check=True)
    out: dict[str, dict[str, Any]] = json.loads((folder / "surprise.json").read_text())
    return out


def split_data(name: str, data: RatingsData) -> tuple[RatingsData, RatingsData]:
    if name == "time":
        return time_split(data, 0.2)
    no_time = RatingsData(
        data.user_vocab, data.user_codes, data.movie_vocab, data.movie_codes, data.ratings
    )
    return time_split(no_time, 0.2, seed=0)


def run_split(name: str, data: RatingsData, python: Path, repeats: int) -> dict[str, Any]:
    train, test = split_data(name, data)
    known = known_users_only(train, test)
    times: dict[str, dict[str, list[float]]] = {}
    results: dict[str, dict[str, Any]] = {}
    models: dict[str, Any] = {}
    load = [round(os.getloadavg()[0], 1)]
    with tempfile.TemporaryDirectory() as tmp:
        write_split(Path(tmp), train, test)
        for _ in range(repeats):
            for algo in ("item-item", "user-user"):
                model, pred, t = fit_predict_timed(algo, train, test)
                key = f"movierec {algo}"
                models[key] = model
                results[key] = {"pred": pred}
                for k, v in t.items():
                    times.setdefault(key, {}).setdefault(k, []).append(v)
            for key, row in run_surprise(python, Path(tmp)).items():
                results[key] = {"pred": row.pop("pred")}
                for k, v in row.items():
                    times.setdefault(key, {}).setdefault(k, []).extend(v)
            load.append(round(os.getloadavg()[0], 1))
    for key, model in models.items():
        results[key].update(ranking_metrics(model, train, test, k=10))
        results[key]["ndcg@10 known users"] = ranking_metrics(model, train, known, k=10)["ndcg@10"]
    pop = MostPopular().fit(train)
    results["most popular (global mean)"] = {
        "pred": pop.predict(test.user_ids, test.movie_ids),
        **ranking_metrics(pop, train, test, k=10),
        "ndcg@10 known users": ranking_metrics(pop, train, known, k=10)["ndcg@10"],
        **{k: float("nan") for k in TIMES},
    }
    ref = np.add(times[REFERENCE]["fit_s"], times[REFERENCE]["predict_s"])
    ref_wall = np.add(times[REFERENCE]["fit_wall_s"], times[REFERENCE]["predict_wall_s"])
    for key, t in times.items():
        row = results[key]
        row.update({k: float(np.median(v)) for k, v in t.items()})
        total = np.add(t["fit_s"], t["predict_s"])
        total_wall = np.add(t["fit_wall_s"], t["predict_wall_s"])
        row["total_s_rounds"] = [round(float(x), 4) for x in total]
        # ratio per round (both measured back to back), then the median over the rounds
        row["speedup"] = float(np.median(ref / total))
        row["speedup_wall"] = float(np.median(ref_wall / total_wall))
    for row in results.values():
        row.update(rating_metrics(test.ratings, np.asarray(row.pop("pred"))))
    return {
        "split": name,
        "train": len(train),
        "test": len(test),
        "repeats": repeats,
        "load_average": load,
        "models": results,
    }


def print_table(report: dict[str, Any]) -> None:
    models = report["models"]
    pop_ndcg = models["most popular (global mean)"].get("ndcg@10", float("nan"))
    load = report["load_average"]
    print(
        f"\n## split: {report['split']} (train {report['train']:,}, test {report['test']:,}; "
        f"median of {report['repeats']} rounds; load average {min(load)}-{max(load)})"
    )
    head = (
        "| model | RMSE | MAE | fit CPU s | predict CPU s | speed-up vs KNNBaseline (CPU) "
        "| (wall) | P@10 | R@10 | NDCG@10 | NDCG vs popular | NDCG@10 known users | coverage |"
    )
    print(head)
    print("|---|" + "---:|" * 12)
    for name, m in models.items():
        timed = np.isfinite(m["fit_s"])
        speed = f"{m['speedup']:.1f}x | {m['speedup_wall']:.1f}x" if timed else "- | -"
        nd = m.get("ndcg@10")
        rank = (
            f"{m['precision@10']:.4f} | {m['recall@10']:.4f} | {nd:.4f} | {nd / pop_ndcg:.2f}x | "
            f"{m['ndcg@10 known users']:.4f} | {m['coverage']:.3f}"
            if nd is not None
            else "- | - | - | - | - | -"
        )
        fit = f"{m['fit_s']:.3f}" if timed else "-"
        pred = f"{m['predict_s']:.3f}" if timed else "-"
        print(f"| {name} | {m['rmse']:.4f} | {m['mae']:.4f} | {fit} | {pred} | {speed} | {rank} |")
    ref = models[REFERENCE]
    best = min(OURS, key=lambda k: models[k]["rmse"])
    fastest = max(OURS, key=lambda k: models[k]["speedup"])
    print(
        f"target: best kNN {best} RMSE {models[best]['rmse']:.4f} vs KNNBaseline "
        f"{ref['rmse']:.4f} ({'met' if models[best]['rmse'] <= ref['rmse'] else 'missed'}); "
        f"its speed-up {models[best]['speedup']:.1f}x CPU / {models[best]['speedup_wall']:.1f}x "
        f"wall (>= 20x: {'met' if models[best]['speedup'] >= 20 else 'missed'}); "
        f"fastest {fastest} {models[fastest]['speedup']:.1f}x"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", default="time,random")
    ap.add_argument("--repeats", type=int, default=5, help="timing rounds (median reported)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    python = ensure_bench_venv()
    data = RatingsData.from_csv(movielens_100k())
    print(f"MovieLens 100K: {len(data):,} ratings, {data.n_users} users, {data.n_movies} movies")
    reports = [run_split(s, data, python, args.repeats) for s in args.splits.split(",")]
    for report in reports:
        print_table(report)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
