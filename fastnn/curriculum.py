"""Curriculum learning (Goodfellow et al., *Deep Learning*, 8.7.6; Bengio et al. 2009): the
order in which ``fit`` presents the examples, from easy to hard.

``fit(..., curriculum=fn.curriculum.Stochastic(difficulty, schedule))`` replaces the epoch's
shuffled order by the curriculum's draw (:meth:`Stochastic.order`).
"""
import numpy as np


class Stochastic:
    """The texts' stochastic curriculum (Zaremba and Sutskever 2014): every epoch is a random
    mix of easy and hard examples whose share of hard ones grows over the epochs.

    Parameters
    ----------
    difficulty : array-like of shape (n_samples,), float
        A difficulty score per training example (higher is harder: a small model's loss on it,
        a sequence's length, ...), in the order of fit's ``x`` (after ``validation_split``).
    schedule : (start, stop) pair or callable, default (0.2, 1.0)
        The share of hard examples drawn in an epoch: from ``start`` in the first epoch
        linearly to ``stop`` in the last, or ``schedule(epoch, epochs) -> share in [0, 1]``
        (epochs counted from 1).
    hard_fraction : float in (0, 1), default 0.5
        The hard examples are this fraction of them with the highest difficulty (ties broken by
        index), the others are the easy ones.

    Each epoch draws ``n_samples`` examples: ``round(share * n)`` from the hard pool and the rest
    from the easy pool, uniformly and without replacement until a pool is used up (then the
    pool is drawn again), in shuffled order; a sample may appear more than once in an epoch
    when its pool is smaller than its share.
    """

    def __init__(self, difficulty, schedule=(0.2, 1.0), hard_fraction=0.5):
        scores = np.asarray(difficulty, dtype=np.float64)
        if scores.ndim != 1 or len(scores) < 2 or not np.all(np.isfinite(scores)):
            raise ValueError(f"Stochastic: difficulty must be a finite 1-D array of at least 2 "
                             f"scores, got shape {scores.shape}")
        if not 0 < hard_fraction < 1:
            raise ValueError(f"Stochastic: hard_fraction must be in (0, 1), got {hard_fraction}")
        if not callable(schedule):
            start, stop = (float(v) for v in schedule)
            if not (0 <= start <= 1 and 0 <= stop <= 1):
                raise ValueError(f"Stochastic: schedule shares must be in [0, 1], got {schedule}")
        self.difficulty, self.schedule, self.hard_fraction = scores, schedule, float(hard_fraction)
        ranked = np.argsort(-scores, kind="stable")
        n_hard = min(len(scores) - 1, max(1, int(round(hard_fraction * len(scores)))))
        self.hard, self.easy = np.sort(ranked[:n_hard]), np.sort(ranked[n_hard:])

    def share(self, epoch, epochs):
        """The share of hard examples in ``epoch`` (1-based) of ``epochs``."""
        if callable(self.schedule):
            value = float(self.schedule(epoch, epochs))
            if not 0 <= value <= 1:
                raise ValueError(f"Stochastic: schedule({epoch}, {epochs}) gave {value}, not a "
                                 "share in [0, 1]")
            return value
        start, stop = self.schedule
        return start if epochs <= 1 else start + (stop - start) * (epoch - 1) / (epochs - 1)

    def order(self, epoch, epochs, n, rng):
        """The (n,) int64 sample indices of ``epoch``, drawn with the fit's generator ``rng``."""
        if n != len(self.difficulty):
            raise ValueError(f"Stochastic curriculum: {len(self.difficulty)} difficulty scores "
                             f"for {n} training samples (score the samples fit trains on, after "
                             "validation_split)")
        k = int(round(self.share(epoch, epochs) * n))
        picked = np.concatenate([_draw(self.hard, k, rng), _draw(self.easy, n - k, rng)])
        return picked[rng.permutation(n)].astype(np.int64)


def _draw(pool, k, rng):
    """``k`` entries of ``pool``: whole shuffled passes over it, then part of one more."""
    passes = [pool[rng.permutation(len(pool))] for _ in range(-(-k // len(pool)))]
    return np.concatenate(passes)[:k] if passes else pool[:0]
