"""Numba compile options shared by the kernel modules, and the OpenMP wait policy.

Imported before numba starts its OpenMP threads (the first parallel kernel call),
which is when libgomp reads the environment set here.
"""
import os

# numba's OpenMP pool waits between parallel regions (a training step has about ten
# per batch).  Sleeping at once (OMP_WAIT_POLICY=PASSIVE) makes every region wake a
# sleeping thread, and a region's end waits for a thread the OS has not run yet;
# spinning without bound (libgomp's default, ~3 ms) collapses when the machine has
# more runnable threads than cores, since a spinning thread burns the time slice
# its sibling needs.  A bounded spin (about 0.2 ms) bridges the gap between the
# regions of one batch and still sleeps when nothing follows.  Epochs of the
# benchmark network, processes alternated on a 2-core host shared with other jobs:
# 0.24-0.27 s spinning (20000 or 300000) against 0.47-0.57 s passive when the
# other jobs ran at lower priority; when they competed at equal priority (load 6-12)
# 1.2-1.7 s at 20000, 7.5-10 s at 300000 and 0.9-1.2 s passive.  The user's own
# OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.  Takes effect when numba starts its
# OpenMP threads (at the first parallel kernel call), so it must run before that.
SPIN_SET_HERE = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
if SPIN_SET_HERE:
    os.environ["GOMP_SPINCOUNT"] = "20000"

# Reassociation lets LLVM vectorise the dot products; NaN / inf semantics are kept
# (no 'nnan' / 'ninf') so a diverging network is still detected by the caller.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
OPTS = dict(cache=True, nogil=True, fastmath=FASTMATH)
