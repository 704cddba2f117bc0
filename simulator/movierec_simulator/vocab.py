"""Fixed vocabularies of the synthetic world: genres, occupations, demographic taste offsets, title words."""

from __future__ import annotations

import numpy as np

# The 18 MovieLens genres, in a fixed order: the world's genre matrices index this tuple.
GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
GENRE_INDEX = {g: i for i, g in enumerate(GENRES)}

# How often a genre is drawn for a movie (drama and comedy dominate, as in MovieLens).
GENRE_WEIGHTS = np.array(
    [8, 5, 2, 2, 10, 5, 2, 13, 3, 1, 4, 1.5, 3, 6, 3, 7, 1.5, 1], dtype=np.float64
)


def _offsets(values: dict[str, float]) -> np.ndarray:
    vec = np.zeros(len(GENRES))
    for name, value in values.items():
        vec[GENRE_INDEX[name]] = value
    return vec


# Genre affinity shift per unit of standardised age ((age - 35) / 15): older users lean towards
# drama, war, westerns and noir, younger ones towards action, animation, horror and sci-fi.
# Mild on purpose: demographic fallbacks should help, not replace personalisation.
AGE_TASTE = _offsets(
    {
        "Action": -0.2,
        "Animation": -0.25,
        "Horror": -0.3,
        "Sci-Fi": -0.2,
        "Comedy": -0.1,
        "Children": -0.1,
        "Documentary": 0.2,
        "Drama": 0.15,
        "War": 0.25,
        "Western": 0.25,
        "Film-Noir": 0.2,
        "Mystery": 0.1,
    }
)
# Genre affinity shift for gender "F" (and its negative, halved, for "M").
GENDER_TASTE = _offsets(
    {
        "Romance": 0.3,
        "Musical": 0.2,
        "Drama": 0.15,
        "Children": 0.1,
        "War": -0.25,
        "Action": -0.15,
        "Horror": -0.1,
        "Western": -0.15,
        "Sci-Fi": -0.1,
    }
)

# Course-style occupations with a base weight and the age range that may hold them.
OCCUPATIONS: tuple[tuple[str, float, int, int], ...] = (
    ("college/grad student", 12, 17, 35),
    ("K-12 student", 6, 10, 18),
    ("other or not specified", 10, 10, 90),
    ("executive/managerial", 8, 25, 70),
    ("academic/educator", 6, 23, 75),
    ("technician/engineer", 8, 20, 67),
    ("programmer", 7, 18, 67),
    ("scientist", 4, 23, 75),
    ("sales/marketing", 5, 18, 67),
    ("writer", 3, 18, 90),
    ("artist", 3, 16, 90),
    ("self-employed", 4, 20, 80),
    ("clerical/admin", 4, 18, 67),
    ("doctor/health care", 4, 24, 70),
    ("lawyer", 2, 24, 75),
    ("homemaker", 2, 20, 80),
    ("customer service", 3, 16, 67),
    ("tradesman/craftsman", 2, 16, 67),
    ("farmer", 1, 16, 80),
    ("unemployed", 2, 16, 67),
    ("retired", 5, 55, 90),
)

ADJECTIVES: tuple[str, ...] = tuple(
    [
        "dark",
        "silent",
        "last",
        "golden",
        "broken",
        "hidden",
        "lost",
        "secret",
        "red",
        "blue",
        "wild",
        "quiet",
        "burning",
        "frozen",
        "endless",
        "eternal",
        "savage",
        "little",
        "strange",
        "brave",
        "crimson",
        "hollow",
        "midnight",
        "final",
        "forgotten",
        "electric",
        "iron",
        "velvet",
        "bitter",
        "sweet",
        "shining",
        "lonely",
        "wicked",
        "distant",
        "fallen",
        "rising",
        "shadow",
        "perfect",
        "crooked",
        "deadly",
        "gentle",
        "restless",
        "scarlet",
        "silver",
        "winter",
        "summer",
        "northern",
        "infinite",
        "haunted",
        "empty",
        "sacred",
        "reckless",
        "hungry",
    ]
)
NOUNS: tuple[str, ...] = tuple(
    [
        "night",
        "river",
        "city",
        "heart",
        "storm",
        "road",
        "king",
        "queen",
        "garden",
        "mirror",
        "dream",
        "ghost",
        "house",
        "war",
        "island",
        "star",
        "sky",
        "fire",
        "ocean",
        "mountain",
        "empire",
        "kingdom",
        "child",
        "soldier",
        "hunter",
        "stranger",
        "detective",
        "machine",
        "planet",
        "forest",
        "letter",
        "promise",
        "secret",
        "summer",
        "winter",
        "horizon",
        "voyage",
        "legend",
        "witness",
        "circle",
        "signal",
        "shadow",
        "harbor",
        "bridge",
        "desert",
        "valley",
        "tower",
        "door",
        "train",
        "station",
        "journey",
        "moon",
        "sun",
        "angel",
        "devil",
        "wolf",
        "tiger",
        "dragon",
        "rose",
        "diamond",
        "game",
        "code",
        "frontier",
        "border",
        "canyon",
        "season",
        "echo",
        "memory",
    ]
)
NAMES: tuple[str, ...] = tuple(
    [
        "Anna",
        "Jack",
        "Maria",
        "Leo",
        "Sofia",
        "Max",
        "Nora",
        "Omar",
        "Iris",
        "Felix",
        "Clara",
        "Hugo",
        "Ada",
        "Victor",
        "Lena",
        "Oscar",
        "Rosa",
        "Ivan",
        "Mei",
        "Kofi",
    ]
)
ROMAN: tuple[str, ...] = ("II", "III", "IV", "V")
