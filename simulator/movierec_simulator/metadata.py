"""World metadata as CSV files (`users.csv`, `movies.csv`) in the layout the ingestor upserts."""

from __future__ import annotations

import csv
from pathlib import Path

from movierec_simulator.world import World

USERS_HEADER = ("user_id", "age", "occupation", "gender")
MOVIES_HEADER = ("movie_id", "title", "year", "genres", "runtime", "popularity")


def write_metadata(world: World, folder: Path | str) -> tuple[Path, Path]:
    """Write `folder/users.csv` and `folder/movies.csv` (genres '|'-separated, unknown year empty)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    users_path, movies_path = out / "users.csv", out / "movies.csv"
    with users_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(USERS_HEADER)
        for i in range(world.n_users):
            rec = world.user_record(i)
            writer.writerow([rec[k] for k in USERS_HEADER])
    with movies_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MOVIES_HEADER)
        for i in range(world.n_movies):
            rec = world.movie_record(i)
            writer.writerow(
                [
                    rec["movie_id"],
                    rec["title"],
                    "" if rec["year"] is None else rec["year"],
                    "|".join(rec["genres"]),
                    rec["runtime"],
                    rec["popularity"],
                ]
            )
    return users_path, movies_path
