"""LLVM IR loops and atomics that numba cannot express, as numba intrinsics.

The register-blocked column sums of the forward pass and row sweep of the backward
pass (partial sums held in SIMD registers for a whole column or row), and the
atomic flags and ``sched_yield`` of the kernels' task queues.  LLVM still picks
the instructions for the host CPU.
"""
import sys

import llvmlite.binding as ll
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core import config as numba_config
from numba.extending import intrinsic

# ---------------------------------------------------------------------------------
# Register-blocked column sums for the forward pass.
#
# ``z[b0:b0 + w] = bias + sum_k data[perm[k]] * A[idx[k], b0:b0 + w]`` over the connections
# ``k`` of one output neuron (``data[k]`` when ``perm`` is empty: values in CSC order),
# with the ``w`` partial sums held in ``nv`` SIMD registers for the whole column: each
# gathered activation row feeds one FMA per vector and the output row is written
# once.  Numba's own vectoriser cannot express this (given scalar accumulators it
# vectorises the loop over connections, with gathers), so the loop is written in
# LLVM IR; LLVM still chooses the instructions and falls back to narrower vectors on
# CPUs without AVX.  Measured on a 1000 x 1000 layer at 4 % density, batch 128:
# 1.15-1.4x the previous 8-connection unrolled loop.
# ---------------------------------------------------------------------------------


def _vector_bytes():
    """The width of the kernels' vectors: 64 bytes (16 float32) where numba compiles
    for AVX-512, else 32 (one AVX register).

    AVX-512 also gives 32 vector registers, so a block of 8 vectors holds a whole
    128-sample panel row, as in the probe: each connection's index, value and
    prefetch are read once instead of twice.  Zen 4, benchmark network, 2 threads:
    forward 1.10-1.13x, backward 1.11-1.25x faster, epochs 107 -> 96.5 ms.  Elsewhere
    (Zen 3: 16 AVX2 registers) wider vectors would spill.
    """
    if numba_config.CPU_NAME and numba_config.CPU_NAME != "host":  # NUMBA_CPU_NAME
        features = numba_config.CPU_FEATURES or ""
    else:
        ll.initialize_native_target()
        features = numba_config.CPU_FEATURES or ll.get_host_cpu_features().flatten()
    return 64 if "+avx512f" in features.split(",") else 32


VEC_BYTES = _vector_bytes()
CACHE_LINE = 64


def _prefetcher(builder, nbytes):
    """A function that emits ``llvm.prefetch`` (read, into all cache levels) for the
    cache lines of ``nbytes`` from a pointer: the rows a gather will need soon, when
    they come from memory far larger than the caches."""
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")

    def prefetch(ptr):
        base = builder.bitcast(ptr, i8p)
        for off in range(0, nbytes, CACHE_LINE):
            builder.call(fn, [builder.gep(base, [ir.Constant(ir.IntType(64), off)]),
                              ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])

    return prefetch
# ``piecewise`` modes of the column sums: the ReLU-like activation applied from the
# registers with its derivative codes written (training), or without them (prediction)
FUSED_CODES = 1
FUSED = 2


def _make_column_fma(nv):
    @intrinsic
    def column_fma(typingctx, A, idx, perm, data, k0, k1, b0, bias, z, g, piecewise, slope,
                   ahead, rows):
        if not (isinstance(A, types.Array) and A.ndim == 2 and A.layout == "C"
                and isinstance(z, types.Array) and z.ndim == 1 and z.layout == "C"
                and isinstance(g, types.Array) and g.ndim == 1 and g.dtype == types.uint8
                and data.dtype == A.dtype == z.dtype):
            return None
        sig = types.void(A, idx, perm, data, k0, k1, b0, bias, z, g, piecewise, slope, ahead,
                         rows)

        def codegen(context, builder, signature, args):
            (tA, tidx, tperm, tdata, tk0, tk1, tb0, tbias, tz, tg, tpw, tslope,
             tahead, trows) = signature.args
            elem = context.get_data_type(tA.dtype)
            width = elem.get_abi_size(context.target_data)
            vec = ir.VectorType(elem, VEC_BYTES // width)
            vptr = vec.as_pointer()
            i64 = ir.IntType(64)
            i8 = ir.IntType(8)
            cvec = ir.VectorType(i8, vec.count)
            arr_A = context.make_array(tA)(context, builder, args[0])
            arr_idx = context.make_array(tidx)(context, builder, args[1])
            arr_perm = context.make_array(tperm)(context, builder, args[2])
            arr_data = context.make_array(tdata)(context, builder, args[3])
            arr_z = context.make_array(tz)(context, builder, args[8])
            arr_g = context.make_array(tg)(context, builder, args[9])
            k0 = context.cast(builder, args[4], tk0, types.intp)
            k1 = context.cast(builder, args[5], tk1, types.intp)
            b0 = context.cast(builder, args[6], tb0, types.intp)
            mode = context.cast(builder, args[10], tpw, types.intp)  # 0, FUSED_CODES, FUSED
            piecewise = builder.icmp_unsigned("!=", mode, ir.Constant(i64, 0))
            codes = builder.icmp_unsigned("==", mode, ir.Constant(i64, FUSED_CODES))
            slope = context.cast(builder, args[11], tslope, tA.dtype)
            ahead = context.cast(builder, args[12], tahead, types.intp)
            row_len = builder.extract_value(arr_A.shape, 1)
            n_idx = builder.extract_value(arr_idx.shape, 0)
            prefetch = _prefetcher(builder, nv * VEC_BYTES)
            prefetch_value = _prefetcher(builder, 1)
            prefetching = builder.icmp_signed(">", ahead, ir.Constant(i64, 0))
            rows_too = builder.icmp_unsigned("!=", context.cast(builder, args[13], trows,
                                                                types.intp), ir.Constant(i64, 0))

            def vec_at(base, c, ptr=vptr, count=vec.count):  # c-th vector after base
                return builder.bitcast(builder.gep(base, [ir.Constant(i64, c * count)]), ptr)

            def splat(v):
                v = builder.insert_element(ir.Constant(vec, None), v, ir.Constant(i64, 0))
                return builder.shuffle_vector(v, ir.Constant(vec, None),
                                              ir.Constant(ir.VectorType(ir.IntType(32), vec.count),
                                                          [0] * vec.count))

            def index(arr, ty, k):
                v = builder.load(builder.gep(arr.data, [k]))
                return context.cast(builder, v, ty.dtype, types.intp)

            # allocas in the entry block: LLVM promotes them to registers.  The sums
            # start from the bias in registers: filling and re-reading the output row
            # first cost 36 against 27 us over the 2,000 empty columns of a 1000-wide layer
            accs = [cgutils.alloca_once(builder, vec) for _ in range(nv)]
            zbase = builder.gep(arr_z.data, [b0])
            bias_vec = splat(context.cast(builder, args[7], tbias, tA.dtype))
            for c in range(nv):
                builder.store(bias_vec, accs[c])
            def sweep(direct, far, rows=False):  # one loop each way: no test inside it
                with cgutils.for_range(builder, builder.sub(k1, k0)) as loop:
                    k = builder.add(k0, loop.index)
                    at = k if direct else index(arr_perm, tperm, k)
                    wv = splat(builder.load(builder.gep(arr_data.data, [at])))
                    row = builder.gep(arr_A.data, [
                        builder.add(builder.mul(index(arr_idx, tidx, k), row_len), b0)])
                    # the row (values in CSC order) or the value (through ``perm``; with
                    # ``rows`` the row too) of the connection ``ahead`` places on, in CSC
                    # order, so across columns: at scale a column has a handful of them
                    if far:
                        bound = n_idx if direct else builder.extract_value(arr_perm.shape, 0)
                        kk = builder.add(k, ahead)
                        kk = builder.select(builder.icmp_signed("<", kk, bound), kk,
                                            builder.sub(bound, ir.Constant(i64, 1)))
                        if not direct:
                            prefetch_value(builder.gep(arr_data.data,
                                                       [index(arr_perm, tperm, kk)]))
                        if direct or rows:
                            prefetch(builder.gep(arr_A.data, [builder.add(
                                builder.mul(index(arr_idx, tidx, kk), row_len), b0)]))
                    for c in range(nv):
                        a = builder.load(vec_at(row, c), align=width)
                        prod = builder.fmul(wv, a, flags=("contract",))
                        builder.store(builder.fadd(builder.load(accs[c]), prod,
                                                   flags=("contract",)), accs[c])

            # an empty permutation: the values are in CSC order already
            n_perm = builder.extract_value(arr_perm.shape, 0)
            with builder.if_else(builder.icmp_signed("==", n_perm, ir.Constant(i64, 0))) as (
                    direct, permuted):
                with direct:  # at scale: prefetch the rows (values gathered in CSC order)
                    with builder.if_else(prefetching) as (ahead_on, ahead_off):
                        with ahead_on:
                            sweep(True, True)
                        with ahead_off:
                            sweep(True, False)
                with permuted:
                    with builder.if_else(prefetching) as (ahead_on, ahead_off):
                        with ahead_on:
                            with builder.if_else(rows_too) as (rows_on, rows_off):
                                with rows_on:
                                    sweep(False, True, True)
                                with rows_off:
                                    sweep(False, True)
                        with ahead_off:
                            sweep(False, False)

            def activate(codes):  # ReLU-like activation (and derivative codes) from registers
                gbase = builder.gep(arr_g.data, [b0])
                sv = splat(slope)
                for c in range(nv):
                    acc = builder.load(accs[c])
                    pos = builder.fcmp_ordered(">", acc, ir.Constant(vec, [0.0] * vec.count))
                    builder.store(builder.select(pos, acc, builder.fmul(acc, sv)),
                                  vec_at(zbase, c), align=width)
                    if codes:
                        builder.store(builder.select(pos, ir.Constant(cvec, [3] * vec.count),
                                                     ir.Constant(cvec, [2] * vec.count)),
                                      vec_at(gbase, c, cvec.as_pointer(), vec.count), align=1)

            with builder.if_else(piecewise) as (fused, plain):
                with fused:
                    with builder.if_else(codes) as (with_codes, without):
                        with with_codes:
                            activate(True)
                        with without:
                            activate(False)
                with plain:
                    for c in range(nv):
                        builder.store(builder.load(accs[c]), vec_at(zbase, c), align=width)
            return context.get_dummy_value()

        return sig, codegen

    return column_fma


column_fma8 = _make_column_fma(8)
column_fma4 = _make_column_fma(4)
column_fma2 = _make_column_fma(2)
column_fma1 = _make_column_fma(1)


def _make_column_pair_fma(nv):
    """``z0[b0:b0 + w] = bias0 + sum_k data[k] * A[idx[k], b0:b0 + w]`` and ``z1`` the same
    with ``data[k + stride]`` and ``bias1``: two columns over the same rows (a dense
    layer's, values in CSC order), each gathered row feeding both columns' sums, so
    the panel is read once for two outputs.  No activation, no prefetching."""
    @intrinsic
    def column_pair_fma(typingctx, A, idx, data, k0, k1, stride, b0, bias0, bias1, z0, z1):
        if not (isinstance(A, types.Array) and A.ndim == 2 and A.layout == "C"
                and isinstance(z0, types.Array) and z0 == z1 and z0.ndim == 1
                and z0.layout == "C" and data.dtype == A.dtype == z0.dtype):
            return None
        sig = types.void(A, idx, data, k0, k1, stride, b0, bias0, bias1, z0, z1)

        def codegen(context, builder, signature, args):
            tA, tidx, tdata = signature.args[:3]
            elem = context.get_data_type(tA.dtype)
            width = elem.get_abi_size(context.target_data)
            vec = ir.VectorType(elem, VEC_BYTES // width)
            vptr = vec.as_pointer()
            i64 = ir.IntType(64)
            arr_A = context.make_array(tA)(context, builder, args[0])
            arr_idx = context.make_array(tidx)(context, builder, args[1])
            arr_data = context.make_array(tdata)(context, builder, args[2])
            zs = [context.make_array(signature.args[9])(context, builder, args[n])
                  for n in (9, 10)]
            k0, k1, stride, b0 = (context.cast(builder, args[n], signature.args[n], types.intp)
                                  for n in (3, 4, 5, 6))
            row_len = builder.extract_value(arr_A.shape, 1)

            def vec_at(base, c):
                return builder.bitcast(builder.gep(base, [ir.Constant(i64, c * vec.count)]),
                                       vptr)

            def splat(v):
                v = builder.insert_element(ir.Constant(vec, None), v, ir.Constant(i64, 0))
                return builder.shuffle_vector(v, ir.Constant(vec, None), ir.Constant(
                    ir.VectorType(ir.IntType(32), vec.count), [0] * vec.count))

            accs = [[cgutils.alloca_once(builder, vec) for _ in range(nv)] for _ in range(2)]
            for col, n in enumerate((7, 8)):
                bias = splat(context.cast(builder, args[n], signature.args[n], tA.dtype))
                for c in range(nv):
                    builder.store(bias, accs[col][c])
            with cgutils.for_range(builder, builder.sub(k1, k0)) as loop:
                k = builder.add(k0, loop.index)
                i = context.cast(builder, builder.load(builder.gep(arr_idx.data, [k])),
                                 tidx.dtype, types.intp)
                row = builder.gep(arr_A.data, [builder.add(builder.mul(i, row_len), b0)])
                ws = [splat(builder.load(builder.gep(arr_data.data, [at])))
                      for at in (k, builder.add(k, stride))]
                for c in range(nv):
                    a = builder.load(vec_at(row, c), align=width)
                    for col in range(2):
                        prod = builder.fmul(ws[col], a, flags=("contract",))
                        builder.store(builder.fadd(builder.load(accs[col][c]), prod,
                                                   flags=("contract",)), accs[col][c])
            for col in range(2):
                zbase = builder.gep(zs[col].data, [b0])
                for c in range(nv):
                    builder.store(builder.load(accs[col][c]), vec_at(zbase, c), align=width)
            return context.get_dummy_value()

        return sig, codegen

    return column_pair_fma


column_pair_fma8 = _make_column_pair_fma(8)
column_pair_fma4 = _make_column_pair_fma(4)
column_pair_fma2 = _make_column_pair_fma(2)
column_pair_fma1 = _make_column_pair_fma(1)


def _make_atomic(op, ordering, doc, operand=None):
    """An intrinsic doing ``atomicrmw op`` on ``flags[i]`` (int64) and returning the old
    value; the operand is the constant ``operand``, or a third argument when None."""

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        val = (ir.Constant(ir.IntType(64), operand) if operand is not None
               else context.cast(builder, args[2], signature.args[2], types.int64))
        return builder.atomic_rmw(op, builder.gep(arr.data, [idx]), val, ordering)

    def typer(flags, *rest):
        if not (isinstance(flags, types.Array) and flags.dtype == types.int64):
            return None
        return types.int64(flags, *rest), codegen

    if operand is None:
        def atomic(typingctx, flags, i, value):
            return typer(flags, i, value)
    else:
        def atomic(typingctx, flags, i):
            return typer(flags, i)
    atomic.__doc__ = doc
    return intrinsic(atomic)


claim = _make_atomic("add", "monotonic", "``flags[i] += 1``; returns the task claimed.", 1)
# a full barrier on x86: every write made before it is visible to a thread that then
# reads the new value
publish = _make_atomic("xchg", "seq_cst", "``flags[i] = value``, atomically.")
# atomic, so that a spin loop sees other threads' updates
read_flag = _make_atomic("add", "seq_cst", "``flags[i]``, read atomically.", 0)


def _yield_codegen(context, builder, signature, args):
    if sys.platform != "win32":  # elsewhere a spin without yield
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
    return context.get_dummy_value()


@intrinsic
def yield_cpu(typingctx):
    """``sched_yield()``: give the core to another runnable thread."""
    return types.void(), _yield_codegen


# ---------------------------------------------------------------------------------
# Register-blocked row sweep for the backward pass (the transpose of the forward's
# column sums).  For the connections ``k0:k1`` of input neuron ``i`` (CSR row) and
# the ``nv`` vectors of samples starting at ``b0``:
#
#   g_k   = sum_b x[b] * D[idx[k], b]          (SDDMM weight gradient, this block)
#   e[b] += sum_k data[k] * D[idx[k], b]       (delta of the layer below)
#
# Each gathered delta row is loaded once and feeds both products; the ``e`` sums
# stay in registers for the whole row and ``x`` (the row's activations) is read
# from L1.  ``g_k`` then goes to ``grad[k - goff]`` by ``mode``: SWEEP_WRITE stores it,
# SWEEP_ADD adds it.  The optimizer step is not taken here but over the row's
# contiguous gradients once they are complete (:func:`~._kernels._row_sums`): a
# scalar step per connection inside this loop made the backward of a 1000 x 1000
# layer at 4 % 1.16x slower than the gradient alone, the vectorised loop after it 1.04x.
# ---------------------------------------------------------------------------------

SWEEP_WRITE = 0
SWEEP_ADD = 1


def _make_row_sweep(nv, with_delta):
    @intrinsic
    def row_sweep(typingctx, D, idx, data, k0, k1, b0, x, e, grad, goff, mode, codes, epilogue,
                  hi, lo, ahead):
        if not (isinstance(D, types.Array) and D.ndim == 2 and D.layout == "C"
                and all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                        for a in (x, e, grad))
                and data.dtype == D.dtype == x.dtype == e.dtype == grad.dtype == hi == lo
                and isinstance(codes, types.Array) and codes.dtype == types.uint8):
            return None
        sig = D.dtype(D, idx, data, k0, k1, b0, x, e, grad, goff, mode, codes, epilogue, hi, lo,
                      ahead)

        def codegen(context, builder, signature, args):
            tD, tidx, tdata, tk0, tk1, tb0, tx, te, tgrad, tgoff, tmode = signature.args[:11]
            elem = context.get_data_type(tD.dtype)
            width = elem.get_abi_size(context.target_data)
            vec = ir.VectorType(elem, VEC_BYTES // width)
            vptr = vec.as_pointer()
            i64 = ir.IntType(64)
            i32 = ir.IntType(32)
            arr = [context.make_array(ty)(context, builder, a)
                   for ty, a in zip(signature.args, args) if isinstance(ty, types.Array)]
            arr_D, arr_idx, arr_data, arr_x, arr_e, arr_grad, arr_codes = arr
            k0 = context.cast(builder, args[3], tk0, types.intp)
            k1 = context.cast(builder, args[4], tk1, types.intp)
            b0 = context.cast(builder, args[5], tb0, types.intp)
            goff = context.cast(builder, args[9], tgoff, types.intp)
            mode = context.cast(builder, args[10], tmode, types.intp)
            epilogue = builder.icmp_unsigned(
                "!=", context.cast(builder, args[12], signature.args[12], types.intp),
                ir.Constant(i64, 0))
            hi, lo = args[13], args[14]
            ahead = context.cast(builder, args[15], signature.args[15], types.intp)
            n_idx = builder.extract_value(arr_idx.shape, 0)
            prefetch = _prefetcher(builder, nv * VEC_BYTES)
            prefetching = builder.icmp_signed(">", ahead, ir.Constant(i64, 0))
            zero_vec = ir.Constant(vec, [0.0] * vec.count)
            row_len = builder.extract_value(arr_D.shape, 1)

            def vec_at(base, c):
                return builder.bitcast(builder.gep(base, [ir.Constant(i64, c * vec.count)]), vptr)

            def splat(v):
                v = builder.insert_element(ir.Constant(vec, None), v, ir.Constant(i64, 0))
                return builder.shuffle_vector(v, ir.Constant(vec, None),
                                              ir.Constant(ir.VectorType(i32, vec.count),
                                                          [0] * vec.count))

            def mode_is(m):
                return builder.icmp_signed("==", mode, ir.Constant(i64, m))

            xbase = builder.gep(arr_x.data, [b0])
            ebase = builder.gep(arr_e.data, [b0])
            accs = [cgutils.alloca_once(builder, vec) for _ in range(nv if with_delta else 0)]
            for acc in accs:  # each block owns its samples of the row: sums start at 0
                builder.store(zero_vec, acc)

            def sweep(m, far):  # the loop for one mode: no branch inside it
                with cgutils.for_range(builder, builder.sub(k1, k0)) as loop:
                    k = builder.add(k0, loop.index)
                    j = context.cast(builder, builder.load(builder.gep(arr_idx.data, [k])),
                                     tidx.dtype, types.intp)
                    row = builder.gep(arr_D.data, [builder.add(builder.mul(j, row_len), b0)])
                    if far:  # as in the forward: across rows
                        kk = builder.add(k, ahead)
                        kk = builder.select(builder.icmp_signed("<", kk, n_idx), kk,
                                            builder.sub(n_idx, ir.Constant(i64, 1)))
                        jj = context.cast(builder, builder.load(builder.gep(
                            arr_idx.data, [kk])), tidx.dtype, types.intp)
                        prefetch(builder.gep(arr_D.data, [
                            builder.add(builder.mul(jj, row_len), b0)]))
                    wp = builder.gep(arr_data.data, [k])
                    w = builder.load(wp)
                    # two interleaved FMA chains for the gradient: few live registers
                    # next to the nv accumulators of the delta
                    chains = [None, None]
                    wv = splat(w) if with_delta else None
                    for c in range(nv):
                        d = builder.load(vec_at(row, c), align=width)
                        if with_delta:
                            prod = builder.fmul(wv, d, flags=("contract",))
                            builder.store(builder.fadd(builder.load(accs[c]), prod,
                                                       flags=("contract",)), accs[c])
                        prod = builder.fmul(builder.load(vec_at(xbase, c), align=width), d,
                                            flags=("contract",))
                        prev = chains[c % 2]
                        chains[c % 2] = prod if prev is None else builder.fadd(
                            prev, prod, flags=("contract",))
                    v = chains[0] if chains[1] is None else builder.fadd(chains[0], chains[1])
                    n = vec.count
                    while n > 1:  # lanes: halves added until one remains
                        n //= 2
                        undef = ir.Constant(v.type, None)
                        low = builder.shuffle_vector(
                            v, undef, ir.Constant(ir.VectorType(i32, n), list(range(n))))
                        high = builder.shuffle_vector(
                            v, undef, ir.Constant(ir.VectorType(i32, n), list(range(n, 2 * n))))
                        v = builder.fadd(low, high)
                    g = builder.extract_element(v, ir.Constant(i64, 0))
                    gp = builder.gep(arr_grad.data, [builder.sub(k, goff)])
                    if m == SWEEP_ADD:
                        g = builder.fadd(builder.load(gp), g)
                    builder.store(g, gp)

            def sweeps(m):  # with and without prefetching
                with builder.if_else(prefetching) as (ahead_on, ahead_off):
                    with ahead_on:
                        sweep(m, True)
                    with ahead_off:
                        sweep(m, False)

            with builder.if_else(mode_is(SWEEP_ADD)) as (a, b):
                with a:
                    sweeps(SWEEP_ADD)
                with b:
                    sweeps(SWEEP_WRITE)
            bias_part = cgutils.alloca_once_value(builder, ir.Constant(elem, 0.0))
            if with_delta:
                with builder.if_else(epilogue) as (fused, plain):
                    with fused:  # delta = e * f'(z) from the codes, in place of x
                        cbase = builder.gep(arr_codes.data, [b0])
                        cvec = ir.VectorType(ir.IntType(8), vec.count)
                        his, los = splat(hi), splat(lo)
                        total = None
                        for c, acc in enumerate(accs):
                            code = builder.load(builder.bitcast(
                                builder.gep(cbase, [ir.Constant(i64, c * vec.count)]),
                                cvec.as_pointer()), align=1)
                            kept = builder.icmp_unsigned(
                                ">=", code, ir.Constant(cvec, [2] * vec.count))
                            pos = builder.icmp_unsigned(
                                "!=", builder.and_(code, ir.Constant(cvec, [1] * vec.count)),
                                ir.Constant(cvec, [0] * vec.count))
                            factor = builder.select(kept, builder.select(pos, his, los), zero_vec)
                            v = builder.fmul(builder.load(acc), factor)
                            builder.store(v, vec_at(xbase, c), align=width)
                            total = v if total is None else builder.fadd(total, v)
                        n = vec.count
                        while n > 1:
                            n //= 2
                            undef = ir.Constant(total.type, None)
                            total = builder.fadd(
                                builder.shuffle_vector(total, undef, ir.Constant(
                                    ir.VectorType(i32, n), list(range(n)))),
                                builder.shuffle_vector(total, undef, ir.Constant(
                                    ir.VectorType(i32, n), list(range(n, 2 * n)))))
                        builder.store(builder.extract_element(total, ir.Constant(i64, 0)),
                                      bias_part)
                    with plain:
                        for c, acc in enumerate(accs):
                            builder.store(builder.load(acc), vec_at(ebase, c), align=width)
            return builder.load(bias_part)

        return sig, codegen

    return row_sweep


row_sweep8 = _make_row_sweep(8, False)
row_sweep4 = _make_row_sweep(4, False)
row_sweep2 = _make_row_sweep(2, False)
row_sweep8_delta = _make_row_sweep(8, True)
row_sweep4_delta = _make_row_sweep(4, True)
row_sweep2_delta = _make_row_sweep(2, True)
row_sweep1 = _make_row_sweep(1, False)
row_sweep1_delta = _make_row_sweep(1, True)
