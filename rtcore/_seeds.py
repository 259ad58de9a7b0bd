"""Sub-seeds: one seed in [0, 2**63 - 1] gives an independent, valid seed for each purpose.

``derive_seed(seed, purpose) = mix63(seed XOR key(purpose))``, with ``key`` the first 63 bits of
sha256(purpose) and ``mix63`` a bijection of [0, 2**63) (xor-shifts and multiplications by odd
constants modulo 2**63, each invertible). So for each purpose distinct seeds always give distinct
sub-seeds, every bit of the seed reaches the result, and no arithmetic overflows (``seed * 7919 +
...`` overflowed a 64-bit integer above about 2.3e15). Feed the whole sub-seed to a generator that
keeps it (``numpy.random.default_rng``); torch's CPU generator keeps only 32 bits of a seed.
"""

from __future__ import annotations

import hashlib

from .validation import check_seed

MASK63 = (1 << 63) - 1


def mix63(x: int) -> int:
    """A bijection of [0, 2**63) that spreads every input bit over the output."""
    x ^= x >> 31
    x = (x * 0x5851F42D4C957F2D) & MASK63
    x ^= x >> 29
    x = (x * 0x14057B7EF767814F) & MASK63
    return x ^ (x >> 32)


def derive_seed(seed: int, purpose: str) -> int:
    """The sub-seed in [0, 2**63 - 1] of ``seed`` (checked: an integer in [0, 2**63 - 1]) for ``purpose``."""
    key = int.from_bytes(hashlib.sha256(f"rtcore:{purpose}".encode()).digest()[:8], "little") & MASK63
    return mix63(check_seed(seed) ^ key)
