"""Which GEMM a dense product of the cpu backend runs on, per shape, decided by measurement.

The three products of a Dense layer (``x @ W`` forward, ``x.T @ dz`` weight gradient, ``dz @
W.T`` input gradient) have two candidates on the CPU, both split over the Numba threads:

* ``simd``: the register-blocked kernel of :mod:`.gemm_simd` (no call overhead, no packing,
  no cache blocking: it wins the skinny products of small networks on CPUs with AVX-512, where
  its 64-byte vectors are one register each);
* ``blas``: single-threaded OpenBLAS calls on blocks of the output (:func:`.parallel.pgemm`),
  which pack and cache-block: they win the big products (batch 128-1024, layers of 1024+
  units) and, where the CPU has no AVX-512, most others too (the SIMD kernel's 16
  accumulators of 64 bytes then need 32 of AVX2's 16 registers).

``dz @ W.T`` has only the BLAS candidate (the SIMD kernel reads rows of ``b``, here columns
of ``W``). For the others, :func:`use_blas` answers from a dict keyed by (product, M, N, K,
itemsize, threads); the first time a key is asked it is decided:

1. ``FASTNN_GEMM=simd`` or ``blas`` in the environment forces that candidate (``auto``, the
   default, measures); read at import and by :func:`refresh` (call it after changing the
   variable in a running process);
2. products of fewer than ``TINY`` multiply-adds keep the SIMD kernel without measuring: the
   whole product takes under about a microsecond, below the resolution of a measurement and
   of the order of BLAS's fixed call cost (argument checks, buffer set-up), which the SIMD
   kernel does not pay;
3. a decision this machine made before is read from the cache file (below);
4. otherwise both candidates are timed on scratch arrays (random values), interleaved, the
   best of 3-7 rounds, in about ``BUDGET_S`` per shape; each on one thread, on the share of
   the output its busiest thread computes (:func:`_measure` says why). Shares of more than
   ``TIMED_WORK`` multiply-adds are timed on a cut of the output (fewer rows or columns, not
   under 64) and the time scaled by the work: a cut favours the SIMD kernel (smaller
   operands stay in cache, BLAS's packing is shared by fewer rows), so it errs towards the
   default. BLAS is chosen only when it is faster by ``MARGIN`` (10%), so noise does not
   flip a choice; otherwise the SIMD kernel stays (the behaviour before this module).

Decisions made by measurement are written, atomically, to
``$XDG_CACHE_HOME/fastnn/gemm-choice.json`` (``~/.cache/...`` without it), under a key of the
machine (CPU model and its vector extensions, ``OPENBLAS_CORETYPE`` and the core OpenBLAS
runs, NumPy's OpenBLAS and Numba versions, this module's ``KERNELS`` version), so every run on
the machine makes the same choice: the candidates round differently, and a seeded run must
give the same weights each time. An unreadable cache is ignored (and replaced at the next
write); a cache that cannot be written leaves the decisions in memory only.

Measuring runs the Numba pool (OpenBLAS on one thread, as the cpu backend always runs;
:func:`fastnn.kernels.threads.use_pool`), the pool the model layer has made active before any
cpu kernel runs; it is set again here so that a direct kernel call cannot time BLAS calls
nested in Numba's threads.
"""
import json
import os
import platform
import tempfile
import time

import numpy as np

from .. import threads

__all__ = ["FORWARD", "WEIGHT_GRAD", "INPUT_GRAD", "use_blas", "layer_plan", "decisions",
           "refresh", "cache_path", "machine_key", "PLAN_FORWARD_BLAS", "PLAN_WEIGHT_GRAD_BLAS",
           "stored_choice", "store_choice", "measured_choice"]

FORWARD, WEIGHT_GRAD, INPUT_GRAD = 0, 1, 2
"""The products: ``a @ b`` (x @ W), ``a.T @ b`` (x.T @ dz), ``a @ b.T`` (dz @ W.T)."""
_PRODUCT_NAMES = {FORWARD: "a@b", WEIGHT_GRAD: "a.T@b", INPUT_GRAD: "a@b.T"}

PLAN_FORWARD_BLAS, PLAN_WEIGHT_GRAD_BLAS = 1, 2
"""Bits of a layer plan (:func:`layer_plan`, the compiled epoch's ``COMPILED_LAYER.gemm``)."""

KERNELS = 4          # bump when a candidate or the timing changes: stored decisions not reused
TINY = 8192          # multiply-adds below which the SIMD kernel is kept without measuring
TIMED_WORK = 1 << 27  # multiply-adds above which a cut of the output is timed (at 1 << 24 a
                      # 64x256 cut of 256x1024x1024 kept b's panel in L2: the SIMD kernel
                      # looked 5% faster than BLAS and ran 2.2x slower on the whole product)
PARALLEL_WORK = 1 << 23  # multiply-adds from which the split call itself is timed (the whole
                         # product: 1024x4096x4096 takes about 1 s to decide, once a machine)
MIN_CUT = 64         # rows / columns a cut keeps at least
MARGIN = 1.10        # BLAS is chosen when simd time > MARGIN * blas time
BUDGET_S = 0.02      # timing per shape (the rounds after the warm-up), roughly
MIN_SAMPLE_S = 50e-6  # a timed sample repeats the product until it lasts about this long
_ROUNDS = (3, 7)     # at least / at most this many interleaved rounds: more while the
CLEAR = 1.5          # times are within this factor of each other and the budget lasts

_MODES = ("auto", "simd", "blas")
_state = {"mode": None, "path": None, "machine": None, "stored": None, "file": None}
_memo = {}
_log = {}            # key -> how it was decided (for decisions())


def refresh():
    """Re-read ``FASTNN_GEMM`` and the cache location from the environment and forget the
    decisions held in memory (the cache file is read again when a new shape is asked)."""
    mode = os.environ.get("FASTNN_GEMM", "auto").strip().lower() or "auto"
    _state["mode"] = mode
    _state["path"] = None
    _state["stored"] = None
    _memo.clear()
    _log.clear()


def _mode():
    mode = _state["mode"]
    if mode not in _MODES:
        raise ValueError(f"FASTNN_GEMM={mode!r}: use one of {', '.join(_MODES)}")
    return mode


def use_blas(product, m, n, k, itemsize, parts):
    """True when the product (:data:`FORWARD`, :data:`WEIGHT_GRAD` or :data:`INPUT_GRAD`) of
    an (M, N) output over K should run through BLAS (:func:`.parallel.pgemm`), False for the
    SIMD kernel; ``itemsize`` 4 for float32, 8 for float64 (an array's ``itemsize``, cheaper
    to get than its dtype), ``parts`` the Numba threads it is split over. A dict lookup once
    the key has been decided (a few hundred ns)."""
    key = (product, m, n, k, itemsize, parts)
    choice = _memo.get(key)
    if choice is None:
        choice = _memo[key] = _decide(key)
    return choice


def layer_plan(batch_size, n_in, n_out, dtype, parts):
    """The choices of one Dense layer's products at ``batch_size`` rows as an int of
    :data:`PLAN_FORWARD_BLAS` | :data:`PLAN_WEIGHT_GRAD_BLAS` (dz @ W.T is always BLAS)."""
    plan, size = 0, np.dtype(dtype).itemsize
    if use_blas(FORWARD, batch_size, n_out, n_in, size, parts):
        plan |= PLAN_FORWARD_BLAS
    if use_blas(WEIGHT_GRAD, n_in, n_out, batch_size, size, parts):
        plan |= PLAN_WEIGHT_GRAD_BLAS
    return plan


def decisions():
    """{shape key: (choice, how)} of every product decided in this process, ``how`` one of
    'forced', 'only candidate', 'tiny', 'cache', 'measured' (with the times, microseconds)."""
    return {_shape_key(key): ("blas" if _memo[key] else "simd", _log.get(key, ""))
            for key in _memo}


_DTYPES = {4: np.dtype(np.float32), 8: np.dtype(np.float64)}


def _shape_key(key):
    product, m, n, k, itemsize, parts = key
    return f"{_PRODUCT_NAMES[product]} {_DTYPES[itemsize].name} {m}x{n}x{k} threads={parts}"


def _decide(key):
    product, m, n, k, itemsize, parts = key
    mode = _mode()
    if product == INPUT_GRAD:
        _log[key] = "only candidate"
        return True
    if mode != "auto":
        _log[key] = "forced"
        return mode == "blas"
    if m * n * k < TINY:
        _log[key] = "tiny"
        return False
    use, _log[key] = measured_choice(
        _shape_key(key), "simd", "blas", MARGIN, "us",
        lambda: _measure(product, m, n, k, _DTYPES[itemsize], parts))
    return use == "blas"


_UNITS = {"us": (1e6, 1), "ms": (1e3, 2)}     # unit: (scale from seconds, decimals logged)


def measured_choice(name, default, other, margin, unit, measure):
    """(the candidate to use, how it was decided) for the shape ``name``: the one stored on this
    machine ("cache"), else ``measure()`` -> (seconds of ``default``, of ``other``, what was
    timed) decides: ``other`` when ``default`` is slower than ``margin`` times it, else
    ``default``; the decision is stored (:func:`store_choice`) with both times in ``unit``.
    Used by this module and by :mod:`.conv_choice`."""
    entry = stored_choice(name, (default, other))
    if entry is not None:
        return entry["use"], "cache"
    default_s, other_s, timed = measure()
    scale, places = _UNITS[unit]
    how = (f"measured: {default} {scale * default_s:.{places}f} {unit}, "
           f"{other} {scale * other_s:.{places}f} {unit} ({timed})")
    entry = store_choice(name, {"use": other if default_s > margin * other_s else default,
                                f"{default}_{unit}": round(scale * default_s, places + 1),
                                f"{other}_{unit}": round(scale * other_s, places + 1),
                                "timed": timed})
    return entry["use"], how


# --------------------------------------------------------------------------- measuring


def _largest_part(size, n_parts, align):
    """The longest of the ``n_parts`` pieces :func:`.parallel.pgemm` cuts ``size`` into."""
    def bound(t):
        if t >= n_parts:
            return size
        return min(size, (size * t // n_parts + align // 2) // align * align)
    return max(bound(t + 1) - bound(t) for t in range(n_parts))


def _shares(m, n, k, lanes, parts):
    """The (rows, columns) of the output that the busiest thread computes, for the SIMD kernel
    and for BLAS, following the splits of :func:`.gemm_simd.gemm_simd` and
    :func:`.parallel.pgemm` (the whole output when the product is not split)."""
    from .parallel import ALIGN, SPLIT_MIN_WORK
    if parts < 2 or m * n * k < SPLIT_MIN_WORK:
        return (m, n), (m, n)
    width = 2 * lanes
    m_blocks, n_blocks = -(-m // 8), -(-n // width)
    p = min(parts, m_blocks * n_blocks)
    if m_blocks >= n_blocks:
        simd = (min(m, -(-m_blocks // p) * 8), n)
    else:
        simd = (m, min(n, -(-n_blocks // p) * width))
    if m >= ALIGN * parts:
        blas = (_largest_part(m, parts, ALIGN), n)
    else:
        blas = (m, _largest_part(n, parts, ALIGN))
    return simd, blas


def _cut(m, n, k, lanes):
    """The (rows, columns) of an (m, n) output to time: all of it up to TIMED_WORK
    multiply-adds (half as many in float64, which runs at half the speed), else fewer columns
    where the SIMD kernel walks the output by row blocks (it sweeps all of b per row block),
    fewer rows where it walks column strips, and the other dimension too if that is not
    enough; never under MIN_CUT."""
    work = TIMED_WORK * lanes // 16
    if m * n * k <= work:
        return m, n
    by_rows = -(-m // 8) >= -(-n // (2 * lanes))
    dims = [m, n]
    for i in ((1, 0) if by_rows else (0, 1)):
        other = dims[1 - i]
        want = max(MIN_CUT, -(-work // (other * k)))
        dims[i] = min(dims[i], -(-want // 16) * 16)
        if dims[0] * dims[1] * k <= work:
            break
    return dims[0], dims[1]


def _candidate(which, product, m, n, k, dtype, n_parts=1):
    """A call of the SIMD kernel or of BLAS, split over ``n_parts`` threads (one by default),
    on scratch operands of the shape."""
    from .gemm_simd import gemm_simd
    from .parallel import pgemm

    rng = np.random.default_rng(0)
    transa = product == WEIGHT_GRAD
    a = rng.random((k, m) if transa else (m, k), dtype) - 0.5    # values in [-0.5, 0.5)
    b = rng.random((k, n), dtype) - 0.5
    c = np.zeros((m, n), dtype)
    if which == "simd":
        return lambda: gemm_simd(transa, 1.0, a, b, 0.0, c, n_parts)
    return lambda: pgemm(transa, False, 1.0, a, b, 0.0, c, n_parts)


def _measure(product, m, n, k, dtype, parts):
    """(seconds of the SIMD kernel, of BLAS, what was timed).

    Products of at least PARALLEL_WORK multiply-adds are timed as the split call itself on
    ``parts`` threads, the whole product (a neighbour's time slice is small beside them; the
    threads' contention for the caches is part of what decides). Smaller ones as follows.
    Each candidate is timed on one thread on the share of the output its busiest thread
    computes when split over ``parts`` threads (a cut of it for big products, the time scaled
    up by the work): both split into independent blocks and pay the same start of a parallel
    region, so the share decides. Timing the parallel call itself measures the neighbours on
    a shared machine: with one core busy elsewhere, both candidates of a 30 us product took
    the scheduler's 8 ms slice. Interleaved rounds, the best of each: 3, or up to 7 within
    about BUDGET_S while neither is CLEAR-ly faster."""
    threads.use_pool("numba")
    lanes = 64 // dtype.itemsize
    _candidate("simd", product, 1, 1, 1, dtype)()           # compile / load before timing
    _candidate("blas", product, 1, 1, 1, dtype)()
    if parts > 1 and m * n * k >= PARALLEL_WORK:
        # big enough that a neighbour's time slice is small beside it: the split call itself,
        # on all threads (one thread's share missed the threads' contention for the caches:
        # float64 256x400x784 looked as fast in SIMD and ran at half BLAS's speed)
        fns = [_candidate(w, product, m, n, k, dtype, parts) for w in ("simd", "blas")]
        cuts, scale, how = [(m, n)] * 2, [1, 1], f"{parts} threads"
    else:
        shares = _shares(m, n, k, lanes, parts)
        cuts = [_cut(sm, sn, k, lanes) for sm, sn in shares]
        scale = [(sm * sn) / (cm * cn) for (sm, sn), (cm, cn) in zip(shares, cuts)]
        fns = [_candidate(w, product, cm, cn, k, dtype)
               for w, (cm, cn) in zip(("simd", "blas"), cuts)]
        how = "one thread"
    reps = []
    for f in fns:                                            # warm-up, and the repeats
        start = time.perf_counter()
        f()
        reps.append(max(1, int(MIN_SAMPLE_S / max(time.perf_counter() - start, 1e-7))))
    best = [np.inf, np.inf]
    spent, rounds = 0.0, 0
    while rounds < _ROUNDS[0] or (rounds < _ROUNDS[1] and spent < BUDGET_S and
                                   max(best) < CLEAR * min(best)):
        for i in ((0, 1) if rounds % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            for _ in range(reps[i]):
                fns[i]()
            took = time.perf_counter() - start
            spent += took
            best[i] = min(best[i], took / reps[i])
        rounds += 1
    timed = ", ".join(f"{w} {cm}x{cn}x{k}" + (f" x{s:.3g}" if s != 1 else "")
                      for w, (cm, cn), s in zip(("simd", "blas"), cuts, scale))
    return best[0] * scale[0], best[1] * scale[1], f"{how}: {timed}"


# --------------------------------------------------------------------------- the cache file


def cache_path():
    """Where decisions are kept: ``$XDG_CACHE_HOME/fastnn/gemm-choice.json``."""
    if _state["path"] is None:
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        _state["path"] = os.path.join(root, "fastnn", "gemm-choice.json")
    return _state["path"]


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or platform.machine(), ""
    model, flags = "", set()
    for line in info.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name in ("flags", "Features") and not flags:
            flags = set(value.split())
    vector = "+".join(f for f in ("avx512f", "avx2", "fma", "neon", "asimd") if f in flags)
    return model or platform.machine(), vector


def _openblas_core():
    import ctypes
    from .blas import _numpy_openblas
    lib = _numpy_openblas()
    if lib is None:
        return "scipy-blas"
    words = []
    for name, keep in (("scipy_openblas_get_config64_", 2), ("scipy_openblas_get_corename64_", 1)):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            words += (fn() or b"").decode(errors="replace").split()[:keep]
    return " ".join(words)      # "OpenBLAS 0.3.31.188.0 Haswell"


def machine_key():
    """The machine and software the stored decisions hold for (one line)."""
    if _state["machine"] is None:
        import numba
        model, vector = _cpu_model()
        try:
            core = _openblas_core()
        except Exception:       # noqa: BLE001 - the key must not fail; the core is a detail
            core = "unknown"
        _state["machine"] = (f"{model} [{vector}] OPENBLAS_CORETYPE="
                             f"{os.environ.get('OPENBLAS_CORETYPE', '')} blas={core} "
                             f"numba={numba.__version__} kernels={KERNELS}")
    return _state["machine"]


def _read():
    """The whole cache file as a dict, or an empty one when it is missing or unreadable."""
    try:
        with open(cache_path()) as f:
            data = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        return {}
    return data


def _stored():
    """This machine's stored decisions: {shape key: entry}."""
    if _state["stored"] is None:
        mine = _read().get("machines", {}).get(machine_key())
        _state["stored"] = mine if isinstance(mine, dict) else {}
    return _state["stored"]


def stored_choice(name, candidates):
    """The entry this machine stored under ``name`` (a dict whose "use" is one of
    ``candidates``), or None. The GEMM and the convolution choices share the file (their
    names do not overlap: products start with "a", convolutions with "conv")."""
    entry = _stored().get(name)
    if entry is None:               # another process may have decided it meanwhile
        _state["stored"] = None
        entry = _stored().get(name)
    if isinstance(entry, dict) and entry.get("use") in candidates:
        return entry
    return None


def store_choice(name, entry):
    """Add one decision to the cache file: under a lock (``gemm-choice.json.lock``, where the
    system has ``fcntl``), read again and merged (other processes may have written theirs),
    written to a temporary file and renamed over the old one. Returns the entry that holds:
    ``entry``, or the one another process stored first."""
    path = cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with _locked(path + ".lock"):
            entry = _merge(name, entry)
            fd, tmp = tempfile.mkstemp(prefix=".gemm-choice-", suffix=".tmp",
                                       dir=os.path.dirname(path))
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(_state["file"], f, indent=1, sort_keys=True)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
    except OSError:                 # read-only home or disk full: keep the decision in memory
        entry = _stored().setdefault(name, entry)
    return entry


def _merge(name, entry):
    data = _read() or {"format": 1, "machines": {}}
    machines = data.setdefault("machines", {})
    mine = machines.get(machine_key())
    if not isinstance(mine, dict):
        mine = machines[machine_key()] = {}
    old = mine.get(name)
    if isinstance(old, dict) and isinstance(old.get("use"), str):
        entry = old                       # a decision written first by another process wins
    mine[name] = entry
    _state["stored"], _state["file"] = mine, data
    return entry


class _locked:
    """An exclusive ``flock`` on ``path`` for the ``with`` block (nothing without fcntl)."""

    def __init__(self, path):
        self.path, self.fd = path, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:         # pragma: no cover - not POSIX
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)       # closing releases the lock


refresh()
