"""Sequential: a stack of layers over one flat parameter buffer and one flat gradient buffer."""
import json
import math
import zipfile
from collections import namedtuple

import numpy as np

from . import __version__, threads, validation
from .backend import get_backend
from .errors import BackendUnavailableError, DTypeError, ModelFileError
from .io import atomic_open
from .layers import LAYERS, Activation, Embedding, Layer
from .parameter import UNPICKLE_BACKEND_ENV, restore_backend, unpickle_backend  # noqa: F401

Step = namedtuple("Step", ["layer", "act"])
Step.__doc__ = """One step of a model's forward pass: ``layer`` runs, with ``act`` (a
:class:`fastnn.kernels.contract.Activation`) fused into it, or None. The activation layer that
``act`` replaces is in ``model.layers`` but has no step of its own."""


class Sequential:
    """A feed-forward network: the output of each layer is the input of the next.

    Parameters
    ----------
    layers : list of Layer
    backend : {"numpy", "cpu", "cuda"} or None
        Where the kernels run; None picks :func:`fastnn.backend.default_backend`.
    dtype : {"float32", "float64"}
    seed : int or None
        Seeds the initial weights and the model's random stream (shuffling, dropout), so the
        same seed and backend give the same weights and the same History.

    Attributes
    ----------
    flat_params, flat_grads : 1-D arrays holding every parameter / gradient back to back;
        each ``Parameter.data`` / ``.grad`` is a view into them.
    steps : tuple of Step
        What runs, in order (internal interface of the epoch runners and benchmarks): each
        Dense / Conv2D with the fusable activation right after it absorbed (``Step(layer,
        act)``), every other layer as ``Step(layer, None)``. Decided here, once; the layer
        objects themselves are not changed.

    Pickling and copying
    --------------------
    A model pickles (``pickle``, ``cloudpickle``, ``joblib``) and deep-copies with what its
    .npz file holds - the layers with their configuration, the weights, the non-trainable
    layer state (BatchNorm running statistics) - plus its gradients, random stream, loss and
    history, and its backend *by name*. The layers' work buffers (cached outputs, the last
    forward's inputs) are left out and made again on demand. On unpickling, the flat buffers
    are made on the named backend and every Parameter becomes a view into them again, so an
    optimizer pickled together with the model (``pickle.dumps((model, opt))``) keeps updating
    it. Where the named backend is unavailable (a "cuda" model on a machine without a GPU)
    unpickling raises BackendUnavailableError; load it on another backend with
    ``with fastnn.model.unpickle_backend("cpu"): pickle.loads(blob)`` or
    ``FASTNN_UNPICKLE_BACKEND=cpu`` (or save it and ``Sequential.load(path, backend=...)``).
    ``copy.copy`` is shallow (the copy shares layers and buffers); use ``copy.deepcopy``.
    """

    def __init__(self, layers, backend=None, dtype="float32", seed=0):
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is {layer!r}, not a fastnn layer")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise DTypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.be = get_backend(backend)
        self.backend = self.be.NAME
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.stop_training = False
        self.loss = None
        self.training_state = None             # set by fit: what resuming needs
        self.steps = self._make_steps()
        self._make_parameters()
        for layer in self.layers:              # non-trainable state (BatchNorm running stats)
            layer.init_state(self.be, self.dtype)
        self.bind_rng(self.rng)
        self._sample_shape = None
        self._forward_ran = False

    # -- construction -------------------------------------------------------------------
    def _make_steps(self):
        """The steps that run (see :attr:`steps`): a layer that ``fuses_activation`` absorbs
        the fusable activation right after it."""
        steps, i = [], 0
        while i < len(self.layers):
            layer = self.layers[i]
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if layer.fuses_activation and isinstance(nxt, Activation) and nxt.fusable:
                steps.append(Step(layer, nxt.code))
                i += 2
            else:
                steps.append(Step(layer, None))
                i += 1
        return tuple(steps)

    def _make_parameters(self):
        params, values = [], []
        for i, layer in enumerate(self.layers):
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            params += layer.make_parameters(f"{i}.{type(layer).__name__}")
            values += layer.initial_values(self.rng, self.dtype, next_activation=nxt)
        total = sum(p.size for p in params)
        host = np.concatenate([v.ravel() for v in values]).astype(self.dtype) if values \
            else np.zeros(0, self.dtype)
        self.flat_params = self.be.to_device(host)
        self.flat_grads = self.be.zeros((total,), self.dtype)
        offset = 0
        for p in params:
            p.attach(self, self.flat_params, self.flat_grads, offset, p.shape)
            offset += p.size
        self._params = params

    def bind_rng(self, rng):
        """Hand the random stream ``rng`` to the layers that draw random numbers (those with
        ``uses_rng = True``, e.g. Dropout). The model's own ``self.rng`` by default; ``fit``
        binds its stream for the duration of training."""
        for layer in self.layers:
            if layer.uses_rng:
                layer.rng = rng

    def parameters(self):
        """Every Parameter, in layer order, weight before bias."""
        return list(self._params)

    def num_parameters(self):
        return sum(p.size for p in self._params)

    # -- shapes and checks ---------------------------------------------------------------
    def output_shape(self, sample_shape):
        """Per-sample output shape for inputs of per-sample shape ``sample_shape``."""
        shape = tuple(sample_shape)
        for layer in self.layers:
            layer.check_input(shape)
            shape = layer.output_shape(shape)
        return shape

    def check_inputs(self, x, name="x"):
        """Validate ``x`` (float, finite, a shape every layer accepts); return it in model dtype.
        Integer token ids are taken (as floats of the model dtype) when an Embedding comes first."""
        x = np.asarray(x)
        if self.layers and isinstance(self.layers[0], Embedding) \
                and np.issubdtype(x.dtype, np.integer):
            x = x.astype(self.dtype)
        if x.ndim < 2:
            raise validation.ShapeError(f"{name} has shape {x.shape}; expected a batch (N, features...)")
        if self._sample_shape != x.shape[1:]:
            self.output_shape(x.shape[1:])
        validation.check_inputs(x, x.shape[1:], name)
        self._sample_shape = x.shape[1:]
        return np.ascontiguousarray(x, dtype=self.dtype)

    # -- forward / backward --------------------------------------------------------------
    def forward(self, x, training=False):
        """Network output for a batch ``x`` of shape (N, ...). Checks ``x`` first.

        The result is the last layer's output buffer, reused (overwritten) by the next forward
        pass of the same batch shape: nothing is allocated per step. Copy it to keep it.
        """
        x = self.check_inputs(x)
        return self.forward_batch(self.be.to_device(x), training)

    def forward_batch(self, x, training):
        """Run every step on a batch ``x`` already on this model's backend, in model dtype and
        of a shape the layers accept; returns the last step's output buffer.

        Internal interface of :meth:`forward`, :meth:`predict` and the epoch runners: it checks
        nothing (check once with :meth:`check_inputs`). Switches the thread pool to this
        model's backend (``threads.use_backend``) once per call.
        """
        threads.use_backend(self.be)
        be = self.be
        for layer, act in self.steps:
            x = layer.forward(be, x, training) if act is None \
                else layer.forward(be, x, training, act)
        self._forward_ran = True
        return x

    def backward(self, grad_out):
        """Back-propagate ``grad_out`` (gradient of the loss w.r.t. the output).

        Adds every parameter's gradient into ``p.grad`` (call :meth:`zero_grad` first, as in
        PyTorch) and returns the gradient w.r.t. the input of the last :meth:`forward`.
        """
        if not self._forward_ran:
            raise RuntimeError("backward() called before forward(): run forward(x, training=True) first")
        return self.backward_batch(self.be.to_device(grad_out), need_input_grad=True,
                                   accumulate=True)

    def backward_batch(self, g, need_input_grad, accumulate):
        """Back-propagate ``g`` (the gradient w.r.t. the output of the last
        :meth:`forward_batch`, on this model's backend) through the steps, writing every
        parameter gradient (adding to it when ``accumulate``). Returns the gradient w.r.t. the
        input; without ``need_input_grad`` it stops at the first step with parameters (a leading
        Flatten needs no gradient, nor does that layer's input), and what it returns then is
        not the input gradient (None from a layer with parameters).

        Internal interface of :meth:`backward` and the epoch runners: it checks nothing.
        Switches the thread pool to this model's backend once per call.
        """
        threads.use_backend(self.be)
        be, steps = self.be, self.steps
        stop = 0 if need_input_grad else self._first_trained_step()
        for i in range(len(steps) - 1, stop - 1, -1):
            layer, act = steps[i]
            need_dx = need_input_grad or i > stop
            g = layer.backward(be, g, need_dx, accumulate) if act is None \
                else layer.backward(be, g, need_dx, accumulate, act)
        return g

    def _first_trained_step(self):
        """Index of the first step with parameters that are trained (``layer.trainable``): the
        backward of a fit stops there, so frozen layers below it run no backward at all."""
        return next((i for i, step in enumerate(self.steps)
                     if step.layer.params and step.layer.trainable), len(self.steps) - 1)

    def trainable_parameters(self):
        """The parameters of the layers with ``trainable`` True (what fit's optimizer updates;
        a frozen layer, ``layer.trainable = False``, keeps its weights)."""
        return [p for layer in self.layers if layer.trainable for p in layer.params]

    def zero_grad(self):
        """Set every gradient to zero."""
        self.flat_grads[:] = 0

    # -- training and inference ----------------------------------------------------------
    def fit(self, x, y, loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=32,
            validation_data=None, validation_split=0.0, shuffle=True, seed=None,
            callbacks=(), verbose=1, lr=None, augment=None, class_weight=None, compiled=None,
            initial_epoch=0, curriculum=None):
        """Train with mini-batches; see :func:`fastnn.training.fit` for the parameters."""
        from .training import fit
        return fit(self, x, y, loss=loss, optimizer=optimizer, epochs=epochs,
                   batch_size=batch_size, validation_data=validation_data,
                   validation_split=validation_split, shuffle=shuffle, seed=seed,
                   callbacks=callbacks, verbose=verbose, lr=lr, augment=augment,
                   class_weight=class_weight, compiled=compiled, initial_epoch=initial_epoch,
                   curriculum=curriculum)

    def hessian_vector_product(self, x, y, loss, v, method="auto", eps=None):
        """``H v`` of ``loss`` over (x, y) w.r.t. the flat parameters, ``v`` and the result
        (n_params,) in the order of :meth:`get_weights`; exact (Pearlmutter's R-operator) or a
        central difference of gradients: see :func:`fastnn.hvp.hessian_vector_product`."""
        from .hvp import hessian_vector_product
        return hessian_vector_product(self, x, y, loss, v, method=method, eps=eps)

    def predict(self, x, batch_size=256):
        """Outputs of the last layer for every row of ``x``, as a host array (N, ...)."""
        x = self.check_inputs(x)
        out = None
        for start in range(0, len(x), batch_size):
            yb = self.be.to_host(self.forward_batch(self.be.to_device(x[start:start + batch_size]),
                                                    False))
            if out is None:
                out = np.empty((len(x),) + yb.shape[1:], dtype=self.dtype)
            out[start:start + len(yb)] = yb
        return out if out is not None else np.empty((0,) + self.output_shape(x.shape[1:]), self.dtype)

    def evaluate(self, x, y, loss=None, batch_size=256):
        """``{"loss": float, "accuracy": float}`` (accuracy only for integer class labels).

        ``loss`` defaults to the loss of the last ``fit``, else cross-entropy for integer
        labels and MSE otherwise.
        """
        from .training import evaluate
        return evaluate(self, x, y, loss=loss, batch_size=batch_size)

    # -- persistence ---------------------------------------------------------------------
    def architecture(self):
        """JSON-serialisable description that rebuilds the model (without its weights)."""
        return {"format": "fastnn.Sequential", "version": __version__, "dtype": self.dtype.name,
                "seed": self.seed if isinstance(self.seed, int) else None,
                "layers": [{"class": type(l).__name__, "config": l.get_config(),
                            **({} if l.trainable else {"trainable": False})}
                           for l in self.layers]}

    def save(self, path, optimizer=None):
        """Write architecture (JSON) and weights, and optionally optimizer state, to ``path`` (.npz).

        The file is written to a temporary name in the same folder and renamed, so a crash
        never leaves a half-written model. No pickle is used. Non-trainable layer state (the
        running statistics of BatchNorm: ``layer.state_arrays()``) is stored as
        ``"buffers.<layer index>.<name>"``; after a fit, its training state (epoch, random
        stream, schedules, history: :class:`fastnn.training.TrainingState`) as the JSON
        ``"training"``, which ``load`` restores for ``fit(initial_epoch=...)``.
        """
        arrays = {"architecture": np.array(json.dumps(self.architecture())),
                  "params": np.asarray(self.be.to_host(self.flat_params))}
        if optimizer is not None:
            arrays["optimizer"] = np.array(json.dumps({"class": type(optimizer).__name__,
                                                       "hyper": optimizer.hyper}))
            arrays.update({f"optimizer.{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
        arrays.update({f"buffers.{i}.{name}": value for (i, name), value in self._buffers().items()})
        state = getattr(self, "training_state", None)     # absent in models pickled before it
        if state is not None:
            arrays["training"] = np.array(json.dumps(state.to_dict()))
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path, backend=None):
        """Rebuild a model saved by :meth:`save`, on ``backend`` (None: the default one).

        Raises FileNotFoundError for a missing file and ModelFileError (a ValueError) naming
        the file for anything wrong inside it: not a zip archive, a corrupt member or .npy
        header, a wrong checksum, an invalid architecture, weights or layer state that do not
        fit it. Restore an optimizer with :meth:`load_optimizer_state`."""
        arrays = read_npz(path)
        arch, params, _, buffers = _read_model(path, arrays)
        be = get_backend(backend)      # an unknown or unavailable backend is not the file's fault
        try:
            specs = arch["layers"]
            if not isinstance(specs, list):
                raise TypeError(f"'layers' is a {type(specs).__name__}, not a list")
            layers = [LAYERS[spec["class"]](**spec["config"]) for spec in specs]
            for layer, spec in zip(layers, specs):
                layer.trainable = bool(spec.get("trainable", True))
            needed = sum(math.prod(int(s) for s in shape)
                         for layer in layers for _, shape in layer.parameter_shapes())
        except Exception as exc:                  # whatever a corrupt configuration raises
            raise ModelFileError(f"{path}: the architecture stored in the file is invalid "
                                 f"({type(exc).__name__}: {exc})") from exc
        if params.shape != (needed,):
            raise ModelFileError(f"{path}: holds {params.size} parameters, the architecture needs "
                                 f"{needed}")
        for i, layer in enumerate(layers):
            missing = [n for n in layer.state_names if (i, n) not in buffers]
            if missing:
                raise ModelFileError(f"{path}: layer {i} ({layer!r}) needs the saved state "
                                     f"{missing}, which the file does not hold")
        try:
            model = cls(layers, backend=be.NAME, dtype=arch["dtype"], seed=arch.get("seed"))
        except BackendUnavailableError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{path}: the architecture stored in the file is invalid "
                                 f"({type(exc).__name__}: {exc})") from exc
        if model.num_parameters() != needed:
            raise ModelFileError(f"{path}: holds {params.size} parameters, the architecture needs "
                                 f"{model.num_parameters()}")
        model.set_weights(params)
        for i, layer in enumerate(model.layers):
            try:
                layer.load_state_arrays({n: buffers[i, n] for n in layer.state_names})
            except (ValueError, TypeError) as exc:
                raise ModelFileError(f"{path}: invalid state of layer {i}: {exc}") from exc
        if "training" in arrays:
            from .training import resumed_state
            try:
                model.training_state = resumed_state(json.loads(str(arrays["training"])))
            except Exception as exc:              # whatever a corrupt state raises
                raise ModelFileError(f"{path}: invalid training state ({type(exc).__name__}: "
                                     f"{exc})") from exc
            model.history = model.training_state.history
        return model

    def load_optimizer_state(self, path, optimizer):
        """Restore ``optimizer`` (built on this model's parameters) from a file written by
        ``save(path, optimizer=...)``; with ``fit(..., initial_epoch=<the saved epoch>)`` on
        the model loaded from that file, training then resumes exactly (see
        :func:`fastnn.training.fit`). Raises ModelFileError naming the file when it holds no
        optimizer state or one that does not fit."""
        _, _, state, _ = _read_model(path)
        if not state:
            raise ModelFileError(f"{path}: no optimizer state was saved in this file")
        try:
            optimizer.load_state_dict(state)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise ModelFileError(f"{path}: the optimizer state in the file does not fit "
                                 f"{type(optimizer).__name__}: {exc}") from exc

    def set_weights(self, values):
        """Copy a flat host array (as ``get_weights`` returns) into the parameters."""
        self.be.copy_into(self.flat_params, np.asarray(values, dtype=self.dtype).ravel())

    def get_weights(self):
        """A host copy of the flat parameter buffer."""
        return np.array(self.be.to_host(self.flat_params))

    def _buffers(self):
        """``{(layer index, name): host copy}`` of the non-trainable layer state (BatchNorm's
        running statistics)."""
        return {(i, name): value for i, layer in enumerate(self.layers)
                for name, value in layer.state_arrays().items()}

    def get_state(self):
        """A host snapshot of all the model's training changes: the flat parameters and the
        non-trainable layer state (BatchNorm running statistics), for :meth:`set_state`."""
        return {"params": self.get_weights(), "buffers": self._buffers()}

    def set_state(self, state):
        """Restore a snapshot taken by :meth:`get_state` on a model of the same architecture."""
        self.set_weights(state["params"])
        per_layer = {}
        for (i, name), value in state["buffers"].items():
            per_layer.setdefault(i, {})[name] = value
        for i, arrays in per_layer.items():
            self.layers[i].load_state_arrays(arrays)

    # -- pickling and copying -------------------------------------------------------------
    def __getstate__(self):
        """Everything but the backend module (stored by name: ``backend``), with the flat
        buffers as host arrays and the place of each parameter in them."""
        state = self.__dict__.copy()
        be = state.pop("be")
        state["flat_params"] = be.to_host(self.flat_params)
        state["flat_grads"] = be.to_host(self.flat_grads)
        state["_param_layout"] = [(p.offset, p.shape) for p in self._params]
        state["_forward_ran"] = False           # the layers' saved inputs are not pickled
        return state

    def __setstate__(self, state):
        state = dict(state)
        host_params = state.pop("flat_params")
        host_grads = state.pop("flat_grads")
        layout = state.pop("_param_layout")
        self.__dict__.update(state)
        self.be = restore_backend(self.backend, "Sequential")
        self.backend = self.be.NAME
        own = ("C", "W", "O")                   # a fresh, writeable array of the model's own
        self.flat_params = self.be.to_device(np.require(host_params, self.dtype, own))
        self.flat_grads = self.be.to_device(np.require(host_grads, self.dtype, own))
        for p, (offset, shape) in zip(self._params, layout):
            p.attach(self, self.flat_params, self.flat_grads, offset, shape)

    def __copy__(self):
        """A shallow copy: the same layers, parameters and buffers (use ``copy.deepcopy``
        for an independent model)."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def summary(self, input_shape=None, print_fn=print):
        """Print each layer's output shape and parameter count with totals, as Keras; see
        :func:`fastnn.summary.summary` (``summary_text`` there gives the string)."""
        from .summary import summary
        summary(self, input_shape, print_fn)

    # -- interop ----------------------------------------------------------------------------
    def export_onnx(self, path, input_shape=None, opset=17):
        """Write the model as an ONNX file (dynamic batch axis) that onnxruntime runs; see
        :func:`fastnn.interop.onnx.export`. Needs ``pip install fastnn[onnx]``."""
        from .interop.onnx import export
        return export(self, path, input_shape=input_shape, opset=opset)

    @classmethod
    def from_torch(cls, module, backend=None, dtype=None, seed=0):
        """The model equivalent to the ``torch.nn.Sequential`` ``module``, with its weights;
        see :func:`fastnn.interop.torch.from_torch`."""
        from .interop.torch import from_torch
        return from_torch(cls, module, backend=backend, dtype=dtype, seed=seed)

    def to_torch(self):
        """The equivalent ``torch.nn.Sequential`` with a copy of the weights; see
        :func:`fastnn.interop.torch.to_torch`."""
        from .interop.torch import to_torch
        return to_torch(self)

    def __repr__(self):
        return f"Sequential({self.layers!r}, backend={self.backend!r}, dtype={self.dtype.name!r})"


def atomic_savez(path, arrays):
    """``np.savez`` to a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def read_model_file(path):
    """(architecture dict, flat parameters, optimizer state dict) from a saved model file."""
    arch, params, state, _ = _read_model(path)
    return arch, params, state


def read_buffers(path):
    """``{(layer index, name): array}`` of the non-trainable layer state saved in a model file."""
    return _read_model(path)[3]


_MAX_NPY_HEADER = 10000


def _read_model(path, arrays=None):
    """(architecture, flat parameters, optimizer state, layer buffers) of a model file (or of
    its members ``arrays`` as :func:`read_npz` returns them), each array checked;
    ModelFileError naming the file for whatever is wrong inside it."""
    arrays = read_npz(path) if arrays is None else arrays
    try:
        text = arrays["architecture"]
        if text.dtype.kind != "U" or text.shape != ():
            raise ValueError(f"'architecture' is a {text.dtype} array of shape {text.shape}, "
                             "not a JSON string")
        arch = json.loads(str(text))
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable fastnn model file (architecture: "
                             f"{type(exc).__name__}: {exc})") from exc
    if not isinstance(arch, dict) or arch.get("format") != "fastnn.Sequential":
        raise ModelFileError(f"{path}: not a fastnn.Sequential model file")
    params = arrays.get("params")
    if params is None or params.ndim != 1 or params.dtype.kind != "f":
        what = "no" if params is None else f"a {params.dtype} array of shape {params.shape} as"
        raise ModelFileError(f"{path}: holds {what} 'params', not a 1-D float array")
    state, buffers = {}, {}
    for key, value in arrays.items():
        if key.startswith("optimizer."):
            state[key[len("optimizer."):]] = value
        elif key.startswith("buffers."):
            index, _, name = key[len("buffers."):].partition(".")
            if not (index.isascii() and index.isdigit() and name) or value.dtype.kind != "f":
                raise ModelFileError(f"{path}: invalid layer state entry {key!r} "
                                     f"({value.dtype}, shape {value.shape})")
            buffers[int(index), name] = value
    return arch, params, state, buffers


def read_npz(path):
    """``{name: array}`` of every .npy member of the .npz archive ``path``, read without pickle.

    FileNotFoundError when ``path`` does not exist; ModelFileError naming the file for anything
    else (not a zip archive, a damaged member or .npy header, a header that promises more or
    less data than the member holds, a wrong checksum, Python objects). Each member is read to
    its end, so the zip checksum of every byte is verified.
    """
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable fastnn model file ({type(exc).__name__}: "
                             f"{exc})") from exc
    out = {}
    try:
        with archive:
            for info in archive.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                out[key] = _read_member(archive, info)
    except ModelFileError:
        raise
    except Exception as exc:                      # anything a damaged member raises
        raise ModelFileError(f"{path}: not a readable fastnn model file ({type(exc).__name__}: "
                             f"{exc})") from exc
    return out


def _read_member(archive, info):
    """One .npy member as a fresh array, its header checked against the member's size."""
    fmt = np.lib.format
    with archive.open(info) as fp:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp, max_header_size=_MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp, max_header_size=_MAX_NPY_HEADER)
        else:
            raise ValueError(f"member {info.filename!r}: unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds Python objects")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        found = info.file_size - fp.tell()
        if nbytes != found:
            raise ValueError(f"member {info.filename!r}: its header promises {nbytes} bytes of "
                             f"{dtype} {shape}, it holds {found}")
        data = fp.read(nbytes)                     # to the end: the checksum is verified
        if len(data) != nbytes or fp.read(1):
            raise ValueError(f"member {info.filename!r} is truncated")
    flat = np.frombuffer(data, dtype=dtype, count=count) if count else np.empty(0, dtype)
    array = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return array.copy()
