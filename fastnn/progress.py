"""Progress of ``fit``: a ``tqdm.auto`` bar per epoch and Keras's ``verbose`` meanings.

``verbose=0``: nothing. ``verbose=1``: a progress bar per epoch (a widget in Jupyter, a text
bar on a terminal, nothing when stderr is not a terminal unless the bar is asked for with
``ProgressBar(enabled=True)``) and one line per epoch. ``verbose=2``: one line per epoch only.
"""
from .callbacks import Callback

VERBOSE = {0: "silent", 1: "progress bar and one line per epoch", 2: "one line per epoch"}


def check_verbose(verbose):
    """``verbose`` as an int 0, 1 or 2 (bools count as 0 / 1); ValueError for anything else."""
    if isinstance(verbose, bool) or verbose in VERBOSE:
        return int(verbose)
    raise ValueError(f"verbose must be 0 (silent), 1 (progress bar and epoch lines) or 2 (epoch "
                     f"lines only), got {verbose!r}")


class ProgressBar(Callback):
    """A ``tqdm.auto`` bar over the batches of each epoch, with the running loss.

    ``fit(verbose=1)`` adds one; pass one in ``callbacks`` (with ``verbose=2`` or 0) to choose
    ``enabled`` yourself.

    Parameters
    ----------
    steps : int or None
        Batches per epoch; None takes ``self.params["steps"]``, which fit sets.
    enabled : bool or None, default None
        None: a widget in Jupyter, a bar when the stream is a terminal, else nothing;
        True: always a bar; False: never.
    stream : file or None, default sys.stderr (tqdm's default)
    mininterval : float, default 0.1
        Seconds between redraws (tqdm's ``mininterval``).
    """

    def __init__(self, steps=None, enabled=None, stream=None, mininterval=0.1):
        self.steps, self.enabled, self.stream = steps, enabled, stream
        self.mininterval = mininterval
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm
        steps = self.steps if self.steps is not None else self.params["steps"]
        disable = None if self.enabled is None else not self.enabled
        self.bar = tqdm(total=steps, desc=f"Epoch {epoch}", unit="batch", leave=False,
                        disable=disable, file=self.stream,
                        mininterval=self.mininterval)

    def on_batch_end(self, batch, logs=None):
        bar = self.bar
        if bar is None:
            return
        if logs and "loss" in logs:
            bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
        bar.update(batch + 1 - bar.n)
        if bar.n >= bar.total:         # closed before fit prints the epoch line
            self._close()

    def on_epoch_end(self, epoch, logs=None):
        self._close()

    def on_train_end(self, logs=None):
        self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
