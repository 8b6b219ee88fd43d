"""Every available backend fulfils kernels/contract.py: each op with the contract's signature
(names, order, kinds and defaults of the parameters, not only the name), and the declared
capabilities. Also reports which ops a backend takes from the NumPy reference (run with -s to
see the report; the cpu backend may take only the host memory ops it lists in FROM_REFERENCE)."""
import inspect

import pytest

import fastnn
from fastnn.kernels import contract
from fastnn.kernels.contract import Loss, ThreadPool

BACKENDS = fastnn.available_backends()


def _python_function(fn):
    """The Python function behind a Numba dispatcher (its signature is the function's)."""
    return getattr(fn, "py_func", fn)


def _ops(be):
    optional = () if be.COMPILED_EPOCH_LOSSES else contract.OPTIONAL_OPS
    return [name for name in contract.OPS if name not in optional]


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_declares_its_capabilities(name):
    be = fastnn.get_backend(name)
    missing = [cap for cap in contract.CAPABILITIES if cap not in vars(be)]
    assert not missing, f"backend {name!r} does not declare {missing}"
    assert be.NAME == name
    assert isinstance(be.HOST_ARRAYS, bool)
    assert isinstance(be.THREAD_POOL, ThreadPool)
    assert isinstance(be.COMPILED_EPOCH_LOSSES, frozenset)
    assert all(isinstance(code, Loss) for code in be.COMPILED_EPOCH_LOSSES)
    assert callable(be.check_available)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_op_has_the_contract_signature(name):
    be = fastnn.get_backend(name)
    missing = [op for op in _ops(be) if not callable(getattr(be, op, None))]
    assert not missing, f"backend {name!r} lacks {missing}"
    wrong = {}
    for op in _ops(be):
        got = inspect.signature(_python_function(getattr(be, op)))
        want = contract.signature(op)
        if got != want:
            wrong[op] = f"{got} != contract {want}"
    assert not wrong, f"backend {name!r}: " + "; ".join(f"{k}{v}" for k, v in wrong.items())


def _taken_from_reference(be):
    ref = fastnn.get_backend("numpy")
    return sorted(op for op in _ops(be) if be is not ref and op in vars(ref)
                  and getattr(be, op) is getattr(ref, op))


@pytest.mark.parametrize("name", [n for n in BACKENDS if n != "numpy"])
def test_report_the_ops_taken_from_the_reference(name, capsys):
    be = fastnn.get_backend(name)
    taken = _taken_from_reference(be)
    declared = sorted(vars(be).get("FROM_REFERENCE", ()))
    with capsys.disabled():
        print(f"\nbackend {name!r} takes {len(taken)} op(s) from the NumPy reference: "
              f"{', '.join(taken) or 'none'}")
        fallbacks = vars(be).get("HOST_FALLBACKS")
        if fallbacks:
            print(f"backend {name!r} runs {len(fallbacks)} op(s) on host copies through the "
                  f"reference: {', '.join(fallbacks)}")
    assert taken == declared, (f"backend {name!r} takes {taken} from the reference but declares "
                               f"FROM_REFERENCE = {declared}")


def test_contract_names_every_reference_op():
    """The reference defines exactly the contract's ops (no op lives outside the contract)."""
    ref = fastnn.get_backend("numpy")
    public = {n for n, v in vars(ref).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert public - set(contract.OPS) - set(contract.CAPABILITIES) == set()
