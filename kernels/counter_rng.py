"""The counter-based random bits behind dropout masks, one function for every backend.

Element ``i`` of a mask drawn under ``key`` gets the 24 bits ``counter_bits(key, i)``: the
counter ``i`` goes through an integer hash (Wellons' ``lowbias32``: two multiply-xorshift
rounds, a bijection on 32 bits) keyed by the key's low half, and the result through it again
keyed by the high half. The bits depend only on (key, i), never on which thread or block
computes them or in which order, so a mask is the same at any thread count, on every backend,
and a compiled epoch can draw it inside its loop without storing it.

The function is plain Python on ``numpy.uint64`` values: the reference backend calls it on
arrays of counters (vectorised), the cpu backend compiles it with ``numba.njit`` and the cuda
backend as a device function. Keys come from the model's random stream (one per mask, drawn by
the Dropout layer), so the same seed gives the same masks.
"""
import numpy as np

_MASK32 = np.uint64(0xFFFFFFFF)
_MUL1 = np.uint64(0x7FEB352D)
_MUL2 = np.uint64(0x846CA68B)
_S8, _S15, _S16, _S32 = np.uint64(8), np.uint64(15), np.uint64(16), np.uint64(32)

BITS = 24
"""Random bits per element: a threshold on them decides keep or drop (float32 holds them exactly)."""


def counter_bits(key, i):
    """24 random bits (as uint64 in [0, 2**24)) of counter ``i`` (int, or an array of
    non-negative ints below 2**32) under ``key`` (an int in [0, 2**63))."""
    k = np.uint64(key)
    x = (np.uint64(i) ^ k) & _MASK32
    x ^= x >> _S16
    x = (x * _MUL1) & _MASK32
    x ^= x >> _S15
    x = (x * _MUL2) & _MASK32
    x ^= x >> _S16
    x ^= k >> _S32
    x ^= x >> _S16
    x = (x * _MUL1) & _MASK32
    x ^= x >> _S15
    x = (x * _MUL2) & _MASK32
    x ^= x >> _S16
    return x >> _S8


def keep_threshold(p):
    """Element i is kept when ``counter_bits(key, i) >= keep_threshold(p)``: probability
    1 - p, to 2**-24."""
    return int(round(float(p) * (1 << BITS)))

