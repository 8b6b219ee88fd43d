"""SIMD vectors as Numba values: 64 bytes of float32 (16 lanes) or float64 (8 lanes).

LLVM's loop vectoriser only vectorises innermost loops, so a register-blocked kernel (several
accumulators kept in registers while an inner loop runs over taps or channels) cannot be
written in plain Numba: the accumulators go through memory. ``Vec`` is an LLVM vector value
(``<16 x float>`` / ``<8 x double>``) that Numba keeps in registers like a scalar; these
intrinsics load, store and combine it. On a CPU with AVX-512 each ``Vec`` is one register;
elsewhere LLVM splits it into narrower ones (still correct, just slower).

    acc = vzero(a)                      # a: any float32/float64 array (picks the dtype)
    acc = vfma(acc, s, vload(a, i))     # acc + s * a[i:i + lanes], s a scalar
    acc = vfmav(acc, u, v)              # acc + u * v, lane by lane
    vstore(out, i, acc)                 # out[i:i + lanes] = acc
    vload_n(a, i, n), vstore_n(a, i, v, n)   # the first n lanes only (0 <= n <= lanes); the
                                        # others read as 0 / are not written, not touched
    vscale(v, s)                        # v * s, s a scalar
    vpairsum(u, v)                      # (u0+u1, u2+u3, ..., v0+v1, v2+v3, ...)
    vkeep(v, m)                         # v where m != 0, else 0 (even where v is NaN or Inf)
    vlanes(a)                           # lanes per vector for a's dtype (a constant)

``vload`` / ``vstore`` take a 1-D C-contiguous array and an element index; they do not check
bounds (the caller sizes its buffers), and need no alignment. Keep vectors in local variables
(or tuples passed to inline functions): a Numba list of them crashed (its storage is not
aligned for a 64-byte vector). The FMAs are fused multiply-adds
(one rounding), so results are reproducible from run to run.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, register_model

__all__ = ["Vec", "vload", "vstore", "vload_n", "vstore_n", "vzero", "vfma", "vfmav", "vadd",
           "vscale", "vpairsum", "vkeep", "vlanes"]

VEC_BYTES = 64        # one AVX-512 register


class Vec(types.Type):
    """A vector of ``VEC_BYTES`` bytes of ``dtype`` (types.float32 or types.float64)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VEC_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Vec({dtype} x {self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _float_array(a, what, contiguous_1d=False, writeable=False):
    if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)):
        raise TypingError(f"{what} needs a float32 or float64 array, got {a}")
    if contiguous_1d and (a.ndim != 1 or a.layout != "C"):
        raise TypingError(f"{what} needs a 1-D C-contiguous array, got {a}")
    if writeable and not a.mutable:
        raise TypingError(f"{what} needs a writeable array, got {a}")
    return Vec(a.dtype)


def _same_vectors(what, *vs):
    if not isinstance(vs[0], Vec) or any(v != vs[0] for v in vs):
        raise TypingError(f"{what} needs vectors of one type, got {', '.join(map(str, vs))}")


def _pointer(context, builder, aryty, ary, index, vty):
    data = context.make_array(aryty)(context, builder, ary).data
    return builder.bitcast(builder.gep(data, [index]), context.get_value_type(vty).as_pointer())


def _fma(builder, a, b, c):
    """a * b + c lane by lane, one rounding (llvm.fma)."""
    vt = a.type
    suffix = "f32" if isinstance(vt.element, ir.FloatType) else "f64"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                        f"llvm.fma.v{vt.count}{suffix}")
    return builder.call(fn, [a, b, c])


def _splat(context, builder, vty, scalar):
    lt = context.get_value_type(vty)
    i32 = ir.IntType(32)
    v = builder.insert_element(ir.Constant(lt, ir.Undefined), scalar, ir.Constant(i32, 0))
    zeros = ir.Constant(ir.VectorType(i32, vty.lanes), [0] * vty.lanes)
    return builder.shuffle_vector(v, ir.Constant(lt, ir.Undefined), zeros)


@intrinsic
def vload(typingctx, a, i):
    """a[i:i + lanes] as a Vec."""
    vty = _float_array(a, "vload", contiguous_1d=True)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], vty)
        return builder.load(ptr, align=a.dtype.bitwidth // 8)
    return vty(a, i), codegen


@intrinsic
def vstore(typingctx, a, i, v):
    """a[i:i + lanes] = v."""
    if _float_array(a, "vstore", contiguous_1d=True, writeable=True) != v:
        raise TypingError(f"vstore: {v} does not match {a}")

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[2])
        builder.store(args[2], ptr, align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


def _first_lanes(builder, n, lanes):
    """<lanes x i1>: lane t is on when t < n."""
    i64 = ir.IntType(64)
    idx = ir.Constant(ir.VectorType(i64, lanes), list(range(lanes)))
    nv = builder.insert_element(ir.Constant(ir.VectorType(i64, lanes), ir.Undefined),
                                builder.sext(n, i64) if n.type.width < 64 else n,
                                ir.Constant(ir.IntType(32), 0))
    nv = builder.shuffle_vector(nv, nv, ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                    [0] * lanes))
    return builder.icmp_signed("<", idx, nv)


def _masked(builder, name, vt, ret, args):
    elem = "f32" if isinstance(vt.element, ir.FloatType) else "f64"
    fnty = ir.FunctionType(ret, [a.type for a in args])
    fn = cgutils.get_or_insert_function(builder.module, fnty,
                                        f"llvm.masked.{name}.v{vt.count}{elem}.p0")
    return builder.call(fn, args)


@intrinsic
def vload_n(typingctx, a, i, n):
    """a[i:i + n] in the first n lanes (0 <= n <= lanes), 0 in the others; nothing past
    a[i + n - 1] is read (a masked load)."""
    vty = _float_array(a, "vload_n", contiguous_1d=True)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], vty)
        vt = context.get_value_type(vty)
        mask = _first_lanes(builder, args[2], vty.lanes)
        align = ir.Constant(ir.IntType(32), a.dtype.bitwidth // 8)
        return _masked(builder, "load", vt, vt, [ptr, align, mask, ir.Constant(vt, [0.0] * vty.lanes)])
    return vty(a, i, n), codegen


@intrinsic
def vstore_n(typingctx, a, i, v, n):
    """a[i:i + n] = the first n lanes of v (0 <= n <= lanes); nothing else is written."""
    if _float_array(a, "vstore_n", contiguous_1d=True, writeable=True) != v:
        raise TypingError(f"vstore_n: {v} does not match {a}")

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[2])
        mask = _first_lanes(builder, args[3], sig.args[2].lanes)
        align = ir.Constant(ir.IntType(32), a.dtype.bitwidth // 8)
        _masked(builder, "store", args[2].type, ir.VoidType(), [args[2], ptr, align, mask])
        return context.get_dummy_value()
    return types.none(a, i, v, n), codegen


@intrinsic
def vscale(typingctx, v, s):
    """v * s with the scalar s in every lane."""
    _same_vectors("vscale", v)

    def codegen(context, builder, sig, args):
        s_ = context.cast(builder, args[1], sig.args[1], sig.args[0].dtype)
        return builder.fmul(args[0], _splat(context, builder, sig.args[0], s_))
    return v(v, s), codegen


@intrinsic
def vzero(typingctx, a):
    """A Vec of zeros of a's dtype."""
    vty = _float_array(a, "vzero")

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vty), [0.0] * vty.lanes)
    return vty(a), codegen


@intrinsic
def vfma(typingctx, acc, s, v):
    """acc + s * v with the scalar s in every lane."""
    _same_vectors("vfma", acc, v)

    def codegen(context, builder, sig, args):
        s_ = context.cast(builder, args[1], sig.args[1], sig.args[0].dtype)
        return _fma(builder, _splat(context, builder, sig.args[0], s_), args[2], args[0])
    return acc(acc, s, v), codegen


@intrinsic
def vfmav(typingctx, acc, u, v):
    """acc + u * v lane by lane."""
    _same_vectors("vfmav", acc, u, v)

    def codegen(context, builder, sig, args):
        return _fma(builder, args[1], args[2], args[0])
    return acc(acc, u, v), codegen


@intrinsic
def vadd(typingctx, u, v):
    """u + v lane by lane."""
    _same_vectors("vadd", u, v)

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return u(u, v), codegen


@intrinsic
def vpairsum(typingctx, u, v):
    """Sums of neighbouring lanes: lanes 0 .. n/2 - 1 hold u's pairs (u[2i] + u[2i + 1]),
    lanes n/2 .. n - 1 hold v's. ``lanes`` vectors reduced by log2(lanes) rounds of pairs give
    one vector whose lane i is the sum of vector i's lanes (a transposed horizontal sum)."""
    _same_vectors("vpairsum", u, v)

    def codegen(context, builder, sig, args):
        n = sig.args[0].lanes
        i32 = ir.IntType(32)
        even = builder.shuffle_vector(args[0], args[1],
                                      ir.Constant(ir.VectorType(i32, n), list(range(0, 2 * n, 2))))
        odd = builder.shuffle_vector(args[0], args[1],
                                     ir.Constant(ir.VectorType(i32, n), list(range(1, 2 * n, 2))))
        return builder.fadd(even, odd)
    return u(u, v), codegen


@intrinsic
def vkeep(typingctx, v, m):
    """v in the lanes where m is non-zero, 0 elsewhere (a select: NaN or Inf in a dropped lane
    does not leak, as it would through a multiplication by 0)."""
    _same_vectors("vkeep", v, m)

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, [0.0] * sig.args[0].lanes)
        return builder.select(builder.fcmp_ordered("!=", args[1], zero), args[0], zero)
    return v(v, m), codegen


@intrinsic
def vlanes(typingctx, a):
    """Lanes per Vec for a's dtype: 16 for float32, 8 for float64 (a compile-time constant)."""
    lanes = _float_array(a, "vlanes").lanes

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, lanes)
    return types.intp(a), codegen
