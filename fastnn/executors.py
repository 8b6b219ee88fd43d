"""Where independent tasks (search trials, bagging members) run: in this process, in local
worker processes, or on a Dask distributed cluster, with the same code.

>>> with get_executor("processes", n_jobs=2) as ex:
...     for index, value, lost in ex.run(func, shared, items):
...         ...

``func(shared, item)`` must be a module-level function (picklable); ``shared`` (the data, the
build function) travels to each worker once, each ``item`` once per task. Lambdas and closures
in ``shared`` or the items travel with cloudpickle (local processes, Dask).

Threads. Each task runs with ``n_threads`` threads (:func:`fastnn.set_num_threads` is called
inside the task, in the thread that trains: Numba's thread count belongs to the calling
thread). OpenBLAS's thread count and fastnn's thread setting belong to the whole process, so
two trials may not share a worker process: local worker processes run one task at a time, and
:class:`DaskExecutor` accepts only workers with one thread each (``LocalCluster(...,
threads_per_worker=1)``, ``dask worker --nthreads 1``) and checks it again inside every task.
Parallelism comes from more workers, not more threads per worker.

Faults. An exception raised by ``func`` stops the run and is raised again here (callers that
must survive failing tasks, as the search, catch them inside ``func``). A worker that dies is a
different matter: its tasks are retried on other workers (local processes: up to ``retries``
times, in a fresh pool; Dask: by the scheduler, up to its ``allowed-failures``) and, when they
keep dying, yielded with a ``lost`` message instead of a value, never dropped.
"""
import concurrent.futures as cf
import multiprocessing
import os
import pickle
import sys

from .threads import get_num_threads, set_num_threads


def _dumps(obj):
    """cloudpickle when installed (lambdas, closures, classes defined in __main__), else pickle."""
    try:
        import cloudpickle
    except ImportError:                                  # pragma: no cover - cloudpickle missing
        return pickle.dumps(obj)
    return cloudpickle.dumps(obj)


def _call(func, shared, item, n_threads):
    """Run ``func(shared, item)`` with ``n_threads`` threads (None: leave the setting alone)."""
    if n_threads is not None:
        set_num_threads(n_threads)
    return func(shared, item)


class Executor:
    """Runs ``func(shared, item)`` for every item; see the module docstring. A context manager:
    ``close()`` frees the workers the executor started itself.

    Attributes
    ----------
    n_threads : int or None
        Threads each task trains with (None: the process's current setting).
    """

    n_threads = None

    def run(self, func, shared, items):
        """Yield ``(index, value, lost)`` for each of ``items`` as it finishes (any order):
        ``value = func(shared, items[index])`` and ``lost = None``, or ``value = None`` and
        ``lost`` a message saying how its worker died."""
        raise NotImplementedError

    def close(self):
        """Free what the executor started (worker pools, a local cluster)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SequentialExecutor(Executor):
    """Every task in this process, one after another, in order (the default)."""

    def __init__(self, n_threads=None):
        self.n_threads = n_threads

    def run(self, func, shared, items):
        before = get_num_threads()
        try:
            for index, item in enumerate(items):
                yield index, _call(func, shared, item, self.n_threads), None
        finally:
            if self.n_threads is not None:
                set_num_threads(before)

    def __repr__(self):
        return f"SequentialExecutor(n_threads={self.n_threads!r})"


_WORKER = {}
"""What a local worker process received once: ``func``, ``shared`` and ``n_threads``."""


def _init_worker(payload):
    _WORKER["func"], _WORKER["shared"], _WORKER["n_threads"] = pickle.loads(payload)


def _run_in_worker(item_payload):
    return _call(_WORKER["func"], _WORKER["shared"], pickle.loads(item_payload),
                 _WORKER["n_threads"])


class ProcessExecutor(Executor):
    """Tasks in ``n_jobs`` local worker processes (``concurrent.futures``, started with
    ``spawn``: a forked copy of a process whose OpenMP or Numba thread pool already runs is not
    safe), one task at a time per process.

    Parameters
    ----------
    n_jobs : int or None
        Worker processes (None or -1: one per CPU).
    n_threads : int, default 1
        Threads each task trains with.
    retries : int, default 2
        How many times a task whose worker process died is run again (a dead worker breaks the
        whole pool: every unfinished task of it counts one attempt and reruns in a fresh pool).
    """

    def __init__(self, n_jobs=None, n_threads=1, retries=2):
        self.n_jobs = _cpu_count() if n_jobs in (None, -1) else _positive("n_jobs", n_jobs)
        self.n_threads = _positive("n_threads", n_threads)
        self.retries = int(retries)

    def run(self, func, shared, items):
        payload = _dumps((func, shared, self.n_threads))
        pending = {i: _dumps(item) for i, item in enumerate(items)}
        attempts = dict.fromkeys(pending, 0)
        context = multiprocessing.get_context("spawn")
        while pending:
            pool = cf.ProcessPoolExecutor(min(self.n_jobs, len(pending)), mp_context=context,
                                          initializer=_init_worker, initargs=(payload,))
            try:
                futures = {pool.submit(_run_in_worker, p): i for i, p in pending.items()}
                for future in cf.as_completed(futures):
                    index = futures[future]
                    try:
                        value = future.result()
                    except cf.process.BrokenProcessPool as e:
                        attempts[index] += 1
                        if attempts[index] > self.retries:
                            del pending[index]
                            yield index, None, (f"worker process died {attempts[index]} times "
                                                f"running this task ({e})")
                        continue
                    del pending[index]
                    yield index, value, None
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self):
        return f"ProcessExecutor(n_jobs={self.n_jobs}, n_threads={self.n_threads})"


def _call_on_dask_worker(func, shared, item, n_threads):
    from distributed import get_worker
    worker = get_worker()
    if worker.state.nthreads != 1:
        raise RuntimeError(_one_thread_message({worker.address: worker.state.nthreads}))
    return _call(func, shared, item, n_threads)


def _one_thread_message(bad):
    return (f"fastnn tasks need Dask workers with one thread each (Numba's and OpenBLAS's "
            f"thread settings belong to the process, shared by a worker's threads); these "
            f"workers have more: {bad}. Start them with LocalCluster(threads_per_worker=1) or "
            f"`dask worker --nthreads 1`, and add workers instead of threads")


class DaskExecutor(Executor):
    """Tasks on a Dask distributed cluster, one task per worker at a time.

    Parameters
    ----------
    client : distributed.Client or None
        The cluster to use; None: the current client (``distributed.get_client()``), or, when
        there is none, a ``LocalCluster`` of ``n_jobs`` one-thread worker processes started
        here and closed by :meth:`close`.
    n_jobs : int or None
        Workers of a local cluster started here (None: one per CPU); ignored with a client.
    n_threads : int, default 1
        Threads each task trains with.

    Raises
    ------
    ValueError
        When a worker of the cluster has more than one thread.
    """

    def __init__(self, client=None, n_jobs=None, n_threads=1):
        import distributed
        self.n_threads = _positive("n_threads", n_threads)
        self._own = None
        if client is None:
            try:
                client = distributed.get_client()
            except ValueError:
                n = _cpu_count() if n_jobs in (None, -1) else _positive("n_jobs", n_jobs)
                cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1,
                                                   processes=True)
                client = distributed.Client(cluster)
                self._own = (client, cluster)
        self.client = client
        bad = {w: n for w, n in client.nthreads().items() if n != 1}
        if bad:
            self.close()
            raise ValueError(_one_thread_message(bad))

    def run(self, func, shared, items):
        import distributed
        [shared_future] = self.client.scatter([shared], broadcast=True, hash=False)
        futures = [self.client.submit(_call_on_dask_worker, func, shared_future, item,
                                      self.n_threads, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures):
                i = index[future.key]
                if future.status == "error":
                    error = future.exception()
                    if not isinstance(error, distributed.KilledWorker):
                        raise error
                    yield i, None, f"worker lost: {error}"
                else:
                    yield i, future.result(), None
                future.release()
        finally:
            self.client.cancel(futures)
            shared_future.release()

    def close(self):
        if self._own is not None:
            for thing in self._own:
                thing.close()
            self._own = None

    def __repr__(self):
        return f"DaskExecutor({self.client!r}, n_threads={self.n_threads})"


def get_executor(executor=None, n_jobs=None, n_threads=None):
    """The executor named by ``executor``.

    Parameters
    ----------
    executor : None, "sequential", "processes", "dask", distributed.Client or Executor
        None: sequential when ``n_jobs`` is None or 1, else ``n_jobs`` local processes;
        "dask": the current Dask client (or a local cluster, see :class:`DaskExecutor`); a
        ``distributed.Client``: that cluster; an :class:`Executor` is returned as it is.
    n_jobs : int or None
        Local worker processes ("processes", or None with ``n_jobs`` > 1), or workers of a local
        Dask cluster started for "dask" without a client; -1: one per CPU.
    n_threads : int or None
        Threads per task; None: 1 in parallel executors, the current setting in the
        sequential one.
    """
    if isinstance(executor, Executor):
        return executor
    if executor is None:
        executor = "sequential" if n_jobs in (None, 1) else "processes"
    if executor == "sequential":
        return SequentialExecutor(n_threads)
    parallel_threads = 1 if n_threads is None else n_threads
    if executor == "processes":
        return ProcessExecutor(n_jobs, parallel_threads)
    if executor == "dask":
        return DaskExecutor(None, n_jobs, parallel_threads)
    distributed = sys.modules.get("distributed")
    if distributed is not None and isinstance(executor, distributed.Client):
        return DaskExecutor(executor, None, parallel_threads)
    raise ValueError(f"unknown executor {executor!r}: use None, 'sequential', 'processes', "
                     f"'dask', a distributed.Client or a fastnn.executors.Executor")


def _cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _positive(name, value):
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (or -1 / None for one per CPU), "
                         f"got {value!r}")
    return int(value)
