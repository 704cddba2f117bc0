"""Offline benchmark: our kNN models beside Surprise's on the same data and the same splits.

    .venv/bin/python benchmarks/offline.py [--splits time,random] [--repeats 3] [--json out.json]

Data: MovieLens 100K (real ratings; see benchmarks/datasets.py). Splits: `time` = the latest 20% of
ratings by global time order (what `movierec train` does; most test users are new, so it mostly
measures fallbacks), `random` = a seeded 80/20 split (the setting Surprise's own benchmarks use).
Surprise (scikit-surprise) runs in its own virtualenv, ~/.cache/movierec/bench-venv, created on
first use (it needs numpy<2 and Cython to build). Every model is scored by our metric code on the
same predictions. Times are the best of `--repeats` runs, in CPU seconds of the process (the
fair clock on a shared machine; wall seconds are in the JSON). Speed-ups compare fit + predict.
"""

from __future__ import annotations

import argparse
import json
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
# CPU seconds (process_time: fair on a shared machine) and wall seconds, best of the repeats
TIMES = ("fit_s", "predict_s", "fit_wall_s", "predict_wall_s")

# Runs inside the bench venv: fits each Surprise model on train.csv, predicts test.csv.
SURPRISE_WORKER = r"""
import json, sys, time
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
        c, w = time.process_time(), time.perf_counter(); algo.fit(trainset)
        t["fit_s"].append(time.process_time() - c); t["fit_wall_s"].append(time.perf_counter() - w)
        c, w = time.process_time(), time.perf_counter(); preds = algo.test(pairs)
        t["predict_s"].append(time.process_time() - c); t["predict_wall_s"].append(time.perf_counter() - w)
    out[name] = {**{k: min(v) for k, v in t.items()}, "pred": [p.est for p in preds]}
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


def run_ours(train: RatingsData, test: RatingsData, repeats: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    known = known_users_only(train, test)
    for algo in ("item-item", "user-user"):
        t: dict[str, list[float]] = {k: [] for k in TIMES}
        for _ in range(repeats):
            c, w = time.process_time(), time.perf_counter()
            model = build_model(algo).fit(train)
            t["fit_s"].append(time.process_time() - c)
            t["fit_wall_s"].append(time.perf_counter() - w)
            c, w = time.process_time(), time.perf_counter()
            pred = model.predict(test.user_ids, test.movie_ids)
            t["predict_s"].append(time.process_time() - c)
            t["predict_wall_s"].append(time.perf_counter() - w)
        out[f"movierec {algo}"] = {
            **{k: min(v) for k, v in t.items()},
            "pred": pred,
            **ranking_metrics(model, train, test, k=10),
            "ndcg@10 known users": ranking_metrics(model, train, known, k=10)["ndcg@10"],
        }
    pop = MostPopular().fit(train)
    out["most popular (global mean)"] = {
        **{k: float("nan") for k in TIMES},
        "pred": pop.predict(test.user_ids, test.movie_ids),
        **ranking_metrics(pop, train, test, k=10),
        "ndcg@10 known users": ranking_metrics(pop, train, known, k=10)["ndcg@10"],
    }
    return out


def run_split(name: str, data: RatingsData, python: Path, repeats: int) -> dict[str, Any]:
    if name == "time":
        train, test = time_split(data, 0.2)
    else:
        no_time = RatingsData(
            data.user_vocab, data.user_codes, data.movie_vocab, data.movie_codes, data.ratings
        )
        train, test = time_split(no_time, 0.2, seed=0)
    results = run_ours(train, test, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        write_split(Path(tmp), train, test)
        subprocess.run([str(python), "-c", SURPRISE_WORKER, tmp, str(repeats)], check=True)
        results.update(json.loads((Path(tmp) / "surprise.json").read_text()))
    for row in results.values():
        row.update(rating_metrics(test.ratings, np.asarray(row.pop("pred"))))
    return {"split": name, "train": len(train), "test": len(test), "models": results}


def print_table(report: dict[str, Any]) -> None:
    models = report["models"]
    ref = models["surprise KNNBaseline (item, pearson_baseline)"]
    ref_total = ref["fit_s"] + ref["predict_s"]
    pop_ndcg = models["most popular (global mean)"].get("ndcg@10", float("nan"))
    print(f"\n## split: {report['split']} (train {report['train']:,}, test {report['test']:,})")
    head = "| model | RMSE | MAE | fit CPU s | predict CPU s | speed-up vs KNNBaseline | P@10 | R@10 | NDCG@10 | NDCG vs popular | NDCG@10 known users | coverage |"
    print(head)
    print("|---|" + "---:|" * 11)
    for name, m in models.items():
        total = m["fit_s"] + m["predict_s"]
        speed = f"{ref_total / total:.1f}x" if np.isfinite(total) else "-"
        nd = m.get("ndcg@10")
        rank = (
            f"{m['precision@10']:.4f} | {m['recall@10']:.4f} | {nd:.4f} | {nd / pop_ndcg:.2f}x | "
            f"{m['ndcg@10 known users']:.4f} | {m['coverage']:.3f}"
            if nd is not None
            else "- | - | - | - | - | -"
        )
        fit = f"{m['fit_s']:.3f}" if np.isfinite(m["fit_s"]) else "-"
        pred = f"{m['predict_s']:.3f}" if np.isfinite(m["predict_s"]) else "-"
        print(f"| {name} | {m['rmse']:.4f} | {m['mae']:.4f} | {fit} | {pred} | {speed} | {rank} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", default="time,random")
    ap.add_argument("--repeats", type=int, default=3)
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
