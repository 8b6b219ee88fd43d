"""BLAS GEMM callable from inside Numba ``@njit`` code (and from Python).

``gemm(transa, transb, alpha, a, b, beta, c)`` computes, in place::

    c[:] = alpha * op(a) @ op(b) + beta * c      op(x) = x.T if flag else x

for row-major float32 / float64 2-D arrays, by calling the Fortran
``sgemm`` / ``dgemm`` of NumPy's own OpenBLAS (ILP64, ``scipy_?gemm_64_``),
or, where NumPy has no OpenBLAS of its own, the ones SciPy exports from
``scipy.linalg.cython_blas`` (LP64).  The dtype dispatch
happens at compile time; there is no Python and no heap allocation per call,
and functions that call ``gemm`` can use ``@njit(cache=True)``.

Shapes (after ``op``):

    op(a): (M, K)      a is (M, K), or (K, M) with transa=True
    op(b): (K, N)      b is (K, N), or (N, K) with transb=True
    c:     (M, N)      written in place; with beta == 0 its old contents
                        are ignored (NaNs in c do not propagate)

Typical MLP uses (x: (B, In), W: (In, Out), dy: (B, Out))::

    gemm(False, False, 1.0, x, W, 0.0, y)      # y  = x @ W
    gemm(False, True,  1.0, dy, W, 0.0, dx)    # dx = dy @ W.T   (no copy)
    gemm(True,  False, 1.0, x, dy, 0.0, dW)    # dW = x.T @ dy   (no copy)
    gemm(True,  False, -lr, x, dy, 1.0, W)     # W -= lr * x.T @ dy (fused SGD)

Requirements / notes:

* a, b, c must all have the same dtype (float32 or float64; checked at
  compile time), and c must be writeable.
* Each array must have unit stride along its last axis; the row stride
  may be larger than the row length, so C-contiguous arrays and row-blocks
  / column-blocks such as ``x[:, 10:20]`` are accepted without a copy.
  Anything else raises ValueError (no silent copies are made).
* c must not overlap a or b (BLAS semantics; not checked).
* alpha / beta are cast to the array dtype.
* Dimensions must fit in a 32-bit int (checked; the LP64 fallback needs it).
* Threads: with NumPy's OpenBLAS, the same pool as NumPy's matmul; it
  follows OPENBLAS_NUM_THREADS at load time or ``fastnn.set_num_threads``.
"""

import ctypes

import numpy as np
from llvmlite import ir
import llvmlite.binding as llvm
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import get_cython_function_address, intrinsic

__all__ = ["gemm", "BLAS_INT_BITS"]


# ---------------------------------------------------------------------------
# Resolve the BLAS and register it with LLVM under a fixed symbol name.
#
# We deliberately do NOT use a ctypes function pointer inside the jitted code:
# numba bakes the raw address into the machine code and then refuses to cache
# ("uses dynamic globals").  Instead the compiled code calls an external
# symbol by *name*; the name is bound to the current address here, at import
# time, so cached machine code is re-linked correctly in every new process.
# Any module whose jitted code calls gemm imports this module first, so the
# symbol is always registered before the cache is loaded.
# ---------------------------------------------------------------------------

def _capsule_signature(module, name):
    mod = __import__(module, fromlist=["__pyx_capi__"])
    cap = mod.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    return get_name(cap).decode()


def _numpy_openblas():
    """NumPy's own OpenBLAS (ILP64, symbols ``scipy_?gemm_64_``), or None if NumPy uses another BLAS.

    It is preferred: on the skinny GEMMs of small networks it is 1.3-2x faster than the older
    OpenBLAS SciPy bundles (e.g. (32x784)@(784x400): 175 us against 234 us, one thread), and
    NumPy's matmul, the numpy backend and these kernels then share one BLAS and one thread pool.
    """
    import glob
    import os
    folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "libscipy_openblas64_*.so*"))):
        lib = ctypes.CDLL(path)
        if hasattr(lib, "scipy_sgemm_64_") and hasattr(lib, "scipy_dgemm_64_"):
            return lib
    return None


def _register():
    """Bind the symbols the compiled code calls to a BLAS; returns the BLAS integer width.

    The two choices use different symbol names, so machine code cached for one never links
    against the other's integer width.
    """
    lib = _numpy_openblas()
    if lib is not None:
        for kind in "sd":
            address = ctypes.cast(getattr(lib, f"scipy_{kind}gemm_64_"), ctypes.c_void_p).value
            llvm.add_symbol(_SYMBOLS64[kind], address)
        return 64, _SYMBOLS64
    sig = _capsule_signature("scipy.linalg.cython_blas", "sgemm")
    # Expected (LP64): "void (char *, char *, int *, int *, int *, s *, ...)"
    args = [t.strip() for t in sig[sig.index("(") + 1:sig.rindex(")")].split(",")]
    if len(args) != 13 or args[2] != "int *":
        raise ImportError(
            "fastnn.kernels.cpu.blas: unexpected scipy.linalg.cython_blas "
            "sgemm signature %r (only LP64 'int *' BLAS is supported)" % sig)
    for kind, sym in _SYMBOLS32.items():
        addr = get_cython_function_address("scipy.linalg.cython_blas",
                                           kind + "gemm")
        llvm.add_symbol(sym, addr)
    return 32, _SYMBOLS32


_SYMBOLS32 = {"s": "fastnn_cython_blas_sgemm", "d": "fastnn_cython_blas_dgemm"}
_SYMBOLS64 = {"s": "fastnn_numpy_openblas_sgemm64", "d": "fastnn_numpy_openblas_dgemm64"}
BLAS_INT_BITS, _SYMBOLS = _register()
_INT32_MAX = 2**31 - 1

_ll_int = ir.IntType(BLAS_INT_BITS)
_ll_char = ir.IntType(8)


@intrinsic
def _xgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta,
           c, ldc):
    """Raw column-major Fortran ?gemm call (all scalars passed by pointer).

    transa/transb are the character codes ord('N') / ord('T') as integers.
    a, b, c are arrays; only their data pointers are used.
    """
    arrs = (a, b, c)
    if not all(isinstance(x, types.Array) for x in arrs):
        raise TypingError("gemm: a, b and c must be arrays")
    dt = a.dtype
    if dt not in (types.float32, types.float64):
        raise TypingError("gemm: only float32 and float64 are supported, "
                          "got %s" % (dt,))
    if b.dtype != dt or c.dtype != dt:
        raise TypingError("gemm: a, b and c must have the same dtype, got "
                          "%s, %s, %s" % (a.dtype, b.dtype, c.dtype))
    if not c.mutable:
        raise TypingError("gemm: output array c is read-only")
    ints = (transa, transb, m, n, k, lda, ldb, ldc)
    if not all(isinstance(x, types.Integer) for x in ints):
        raise TypingError("gemm: integer arguments expected")
    for x in (alpha, beta):
        if not isinstance(x, (types.Float, types.Integer, types.Boolean)):
            raise TypingError("gemm: alpha/beta must be real scalars")

    sym = _SYMBOLS["s" if dt == types.float32 else "d"]
    sig = types.void(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta,
                     c, ldc)

    def codegen(context, builder, signature, args):
        (ta, tb, m_, n_, k_, al, a_, lda_, b_, ldb_, be, c_, ldc_) = args
        sty = signature.args
        lty = context.get_value_type(dt)
        lptr = lty.as_pointer()

        # Stack slots live in the entry block (alloca_once), so calling gemm
        # inside a loop does not grow the stack.
        def int_slot(val, ty, width):
            slot = cgutils.alloca_once(builder, width)
            v = context.cast(builder, val, ty, types.int64)
            builder.store(builder.trunc(v, width), slot)
            return slot

        def flt_slot(val, ty):
            slot = cgutils.alloca_once(builder, lty)
            builder.store(context.cast(builder, val, ty, dt), slot)
            return slot

        def data_ptr(val, ty):
            ary = context.make_array(ty)(context, builder, val)
            return builder.bitcast(ary.data, lptr)

        p_ta = int_slot(ta, sty[0], _ll_char)
        p_tb = int_slot(tb, sty[1], _ll_char)
        p_m = int_slot(m_, sty[2], _ll_int)
        p_n = int_slot(n_, sty[3], _ll_int)
        p_k = int_slot(k_, sty[4], _ll_int)
        p_al = flt_slot(al, sty[5])
        p_a = data_ptr(a_, sty[6])
        p_lda = int_slot(lda_, sty[7], _ll_int)
        p_b = data_ptr(b_, sty[8])
        p_ldb = int_slot(ldb_, sty[9], _ll_int)
        p_be = flt_slot(be, sty[10])
        p_c = data_ptr(c_, sty[11])
        p_ldc = int_slot(ldc_, sty[12], _ll_int)

        ip = _ll_int.as_pointer()
        cp = _ll_char.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [cp, cp, ip, ip, ip, lptr, lptr,
                                               ip, lptr, ip, lptr, lptr, ip])
        fn = cgutils.get_or_insert_function(builder.module, fnty, sym)
        builder.call(fn, [p_ta, p_tb, p_m, p_n, p_k, p_al, p_a, p_lda, p_b,
                          p_ldb, p_be, p_c, p_ldc])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _row_ld(x):
    """Leading dimension (row stride in elements) of a row-major 2-D array
    with unit stride along the last axis, or -1 if BLAS cannot use it."""
    r, cols = x.shape
    if r == 0 or cols == 0:     # empty: strides are meaningless
        return max(cols, 1)
    isz = x.itemsize
    if cols > 1 and x.strides[1] != isz:
        return -1
    ld = max(cols, 1)
    if r > 1:
        s0 = x.strides[0]
        if s0 % isz != 0 or s0 // isz < ld:
            return -1
        ld = s0 // isz
    return ld


@njit(cache=True)
def gemm(transa, transb, alpha, a, b, beta, c):
    """c = alpha * op(a) @ op(b) + beta * c, in place (see module docstring).

    transa, transb : bool   -- op(x) = x.T when set
    alpha, beta    : scalars (cast to the array dtype)
    a : (M, K) or (K, M) if transa      b : (K, N) or (N, K) if transb
    c : (M, N), same dtype (float32 / float64), written in place.
    Returns None.
    """
    if transa:
        k, m = a.shape
    else:
        m, k = a.shape
    if transb:
        n, kb = b.shape
    else:
        kb, n = b.shape
    if kb != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm: shapes of op(a), op(b) and c do not match")
    lda = _row_ld(a)
    ldb = _row_ld(b)
    ldc = _row_ld(c)
    if lda < 0 or ldb < 0 or ldc < 0:
        raise ValueError("gemm: arrays need unit stride along the last axis")
    if m == 0 or n == 0:
        return
    if (m > _INT32_MAX or n > _INT32_MAX or k > _INT32_MAX or
            lda > _INT32_MAX or ldb > _INT32_MAX or ldc > _INT32_MAX):
        raise ValueError("gemm: dimension too large for 32-bit BLAS")
    # Row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T.
    # A row-major array is its transpose in column-major with the same ld,
    # so: swap the operands and m/n, keep the transpose flags.
    _xgemm(84 if transb else 78, 84 if transa else 78, n, m, k, alpha,
           b, ldb, a, lda, beta, c, ldc)
