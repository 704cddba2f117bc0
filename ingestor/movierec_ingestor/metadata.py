"""User and movie metadata: CSV files or the metadata API, upserted next to the events."""

from __future__ import annotations

import csv
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from movierec_ingestor import schema
from movierec_ingestor.errors import BadInputError
from movierec_ingestor.events import SLUG_RE
from movierec_ingestor.store import Store

log = logging.getLogger(__name__)

Row = dict[str, Any]
USER_COLUMNS = ("user_id", "age", "occupation", "gender")
MOVIE_COLUMNS = ("movie_id", "title", "year", "genres", "runtime", "popularity")
_FAILURES_BEFORE_PAUSE = 3
_PAUSE_S = 60.0
_BATCH_BUDGET_S = 5.0


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().replace("\x00", "")
    return text or None


def _genres(value: Any) -> str | None:
    """'|'-joined genre names from a list of names, a list of {"name": ...}, or text."""
    if isinstance(value, list):
        names = [g.get("name") if isinstance(g, dict) else g for g in value]
        return "|".join(str(n).strip() for n in names if n) or None
    return _text(value)


def user_row(data: Mapping[str, Any], user_id: int | None = None) -> Row | None:
    """A `users` row from a CSV row or API answer; None when the id is missing or bad."""
    uid = _int(data.get("user_id", user_id))
    if uid is None or uid < 0:
        return None
    return {
        "user_id": uid,
        "age": _int(data.get("age")),
        "occupation": _text(data.get("occupation")),
        "gender": _text(data.get("gender")),
    }


def movie_row(data: Mapping[str, Any], movie_id: str | None = None) -> Row | None:
    """A `movies` row from a CSV row or API answer; None when the id is missing or bad."""
    mid = _text(data.get("movie_id") or data.get("id") or movie_id)
    if mid is None or not SLUG_RE.match(mid):
        return None
    year = _int(data.get("year"))
    if year is None and isinstance(data.get("release_date"), str):
        year = _int(data["release_date"][:4])
    return {
        "movie_id": mid,
        "title": _text(data.get("title")),
        "year": year,
        "genres": _genres(data.get("genres")),
        "runtime": _int(data.get("runtime")),
        "popularity": _float(data.get("popularity")),
    }


def _read_csv(
    path: Path, required: str, parse: Callable[[Mapping[str, Any]], Row | None]
) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or required not in reader.fieldnames:
            raise BadInputError(
                f"{path}: header must start with {required}, got {reader.fieldnames}"
            )
        rows, skipped = [], 0
        for record in reader:
            row = parse(record)
            if row is None:
                skipped += 1
            else:
                rows.append(row)
    if skipped:
        log.warning("%s: skipped %d rows with a missing or bad id", path, skipped)
    return rows


def load_csv_dir(folder: str | Path) -> tuple[list[Row], list[Row]]:
    """`users.csv` and `movies.csv` from a folder (either may be absent, not both)."""
    path = Path(folder)
    users_csv, movies_csv = path / "users.csv", path / "movies.csv"
    if not path.is_dir() or not (users_csv.exists() or movies_csv.exists()):
        raise BadInputError(f"metadata folder {path} must hold users.csv and/or movies.csv")
    users = _read_csv(users_csv, "user_id", user_row) if users_csv.exists() else []
    movies = _read_csv(movies_csv, "movie_id", movie_row) if movies_csv.exists() else []
    return users, movies


class MetadataClient:
    """The metadata API (`/user/<id>`, `/movie/<id>`) with timeouts and a circuit breaker.

    Every failure is logged and answered with None: a slow or broken API costs metadata,
    never ingestion. After a few consecutive failures it pauses for a minute.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 2.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadInputError(f"bad metadata URL {base_url!r}: expected http://HOST:PORT")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._failures = 0
        self._paused_until = 0.0

    @property
    def available(self) -> bool:
        """False while the breaker is open."""
        return time.monotonic() >= self._paused_until

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """GET `/<kind>/<key>` as a JSON object, or None (missing, error, breaker open)."""
        if not self.available:
            return None
        url = f"{self.base_url}/{kind}/{urllib.parse.quote(key, safe='+')}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = json.loads(response.read(1 << 20))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                self._failures = 0
                return None
            self._failed(url, exc)
            return None
        except (OSError, ValueError) as exc:
            self._failed(url, exc)
            return None
        self._failures = 0
        if not isinstance(body, dict) or body.get("message") or body.get("error"):
            return None  # the course API answers unknown ids with {"message": ...}
        return body

    def _failed(self, url: str, exc: Exception) -> None:
        self._failures += 1
        log.warning("metadata lookup %s failed: %s", url, exc)
        if self._failures >= _FAILURES_BEFORE_PAUSE:
            self._paused_until = time.monotonic() + _PAUSE_S
            self._failures = 0
            log.warning("metadata API failing: pausing lookups for %.0f s", _PAUSE_S)


class MetadataSync:
    """Fills `users`/`movies` for ids the stream mentions and the store does not know yet."""

    def __init__(self, store: Store, client: MetadataClient, *, max_lookups: int = 50) -> None:
        self.store = store
        self.client = client
        self.max_lookups = max_lookups
        self._known_users: set[int] = set()
        self._known_movies: set[str] = set()

    def sync(self, user_ids: Iterable[int], movie_ids: Iterable[str]) -> int:
        """Look up unknown ids (bounded per call); returns rows upserted. Never raises."""
        try:
            return self._sync(set(user_ids), set(movie_ids))
        except Exception:
            log.warning("metadata sync failed; ingestion goes on", exc_info=True)
            return 0

    def _sync(self, user_ids: set[int], movie_ids: set[str]) -> int:
        if not self.client.available or self.max_lookups == 0:
            return 0
        new_users = user_ids - self._known_users
        new_movies = movie_ids - self._known_movies
        if new_users:
            known = self.store.known_ids(schema.users, new_users)
            self._known_users |= known
            new_users -= known
        if new_movies:
            known = self.store.known_ids(schema.movies, new_movies)
            self._known_movies |= known
            new_movies -= known
        deadline = time.monotonic() + _BATCH_BUDGET_S
        budget = self.max_lookups
        users: list[Row] = []
        movies: list[Row] = []
        for uid in sorted(new_users)[:budget]:
            if time.monotonic() > deadline:
                break
            data = self.client.get("user", str(uid))
            row = user_row(data, uid) if data is not None else None
            if row is not None and row["user_id"] == uid:
                users.append(row)
                self._known_users.add(uid)
        budget -= len(users)
        for mid in sorted(new_movies)[: max(0, budget)]:
            if time.monotonic() > deadline:
                break
            data = self.client.get("movie", mid)
            row = movie_row(data, mid) if data is not None else None
            if row is not None:
                row["movie_id"] = mid  # the stream's id is the key, whatever the API spells
                movies.append(row)
                self._known_movies.add(mid)
        return self.store.upsert(schema.users, users) + self.store.upsert(schema.movies, movies)
