"""The anchors' split of a list of samples by a seeded shuffle (H3D and FreiHAND).

UDAPE's and RegDA's ``Hand3DStudio`` and ``FreiHand`` call ``random.seed(42)`` and
``random.shuffle(samples)``, then hold out the first ``min(int(0.2 * n), 3200)`` as ``test``;
``train`` is the rest, ``val`` the next block of that size and ``train-val`` what follows it; ``all`` is
every sample in the shuffled order. The
permutation Python's Mersenne Twister draws depends only on the seed and the list's length, so a
private ``random.Random(42)`` gives the same split without touching the global generator.
"""

from __future__ import annotations

import random
from typing import TypeVar

SEED = 42
TEST_FRACTION = 0.2
MAX_TEST = 3200
SPLITS = ("train", "test", "all", "val", "train-val")

T = TypeVar("T")


def seeded_split(samples: list[T], split: str) -> list[T]:
    """The samples of ``split`` (one of ``SPLITS``), in the anchors' shuffled order."""
    shuffled = list(samples)
    random.Random(SEED).shuffle(shuffled)
    held_out = min(int(len(shuffled) * TEST_FRACTION), MAX_TEST)
    return {
        "train": shuffled[held_out:],
        "test": shuffled[:held_out],
        "val": shuffled[held_out : 2 * held_out],
        "train-val": shuffled[2 * held_out :],
        "all": shuffled,
    }[split]
