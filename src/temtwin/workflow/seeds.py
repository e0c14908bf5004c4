"""Deterministic random generators derived from the config seed and stable names."""

from __future__ import annotations

import hashlib

import numpy as np


def rng(seed: int, *names: object) -> np.random.Generator:
    """A numpy Generator seeded from ``seed`` and ``names`` (e.g. stage, sample, image).

    The same seed and names always give the same stream, independent of process, order of jobs
    or Python's hash randomisation.
    """
    key = "\x1f".join(str(n) for n in names).encode()
    digest = hashlib.sha256(key).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))
