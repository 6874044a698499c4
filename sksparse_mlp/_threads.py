"""The number of threads a fit trains with, chosen from the measured times of its batches.

On a quiet 2-core machine two threads train 1.9x faster than one.  With another
busy process on one of the cores every parallel region waits for the thread that
shares that core (a time slice is milliseconds, a region a few hundred
microseconds), and epochs of the benchmark network took 2-5x longer with two
threads than with one.  The trained model does not depend on the thread count
(every kernel sums in an order fixed by the data, not by the threads), so the
engine may change it between any two batches: it trains at the count that was
fastest lately and now and then times a neighbouring count for a few batches
(more often after its own batches became slower, less often while the trials
keep losing).
"""
import threading
from collections import OrderedDict, deque

from . import config as cfg

# Batches timed at a neighbouring count per trial, and the last batches of the
# current count (run just before the trial) whose median it is held against.
TRIAL_BATCHES = 2
HISTORY = 3
# A trial must be this much faster to switch (per-batch times jitter by ~5 %), and
# ends after one batch this much slower (one thread on a quiet machine takes 1.4-1.9x
# as long as two, two beside a busy process 1.3-6x as long as one).
MARGIN = 0.1
CUT_SHORT = 1.25
# Batches between trials: FIRST_TRIAL at the start, AFTER_SWITCH once a trial won,
# doubled after every lost trial up to LONGEST_WAIT.  A lost trial costs a fraction
# of a batch on a quiet machine and up to five beside a busy process: 1-5 % of the
# time once the wait is at its longest; a machine that became quiet again is noticed
# within that wait.
FIRST_TRIAL = 4
AFTER_SWITCH = 16
LONGEST_WAIT = 64
# The current count's last batches this much slower than its best median so far:
# the machine changed (a process started beside us), so try the other count now.
SLOWDOWN = 1.5

# Choosers kept, the least recently used dropped first.
KEPT = 16
_CHOOSERS = OrderedDict()


def _median(values):
    """Median of a few numbers (``np.median`` costs ~20 us a call, per batch here)."""
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


class ThreadChooser:
    """Chooses the thread count of each batch between 1 and ``most``.

    Call :meth:`next_count` before a batch and :meth:`record` with its time after.
    """

    def __init__(self, most):
        self.most = int(most)
        self.current = self.most
        self.times = {}  # count -> recent seconds per sample
        self.wait = FIRST_TRIAL
        self.countdown = FIRST_TRIAL
        self.best = float("inf")  # lowest median of the current count since it was chosen
        self.trial = None  # (count, batches left)
        self.down = True  # which neighbour the next trial times

    def _recent(self, n):
        return self.times.setdefault(n, deque(maxlen=HISTORY))

    def next_count(self):
        """Threads for the next batch."""
        if self.trial is None and self.countdown <= 0:
            lower, upper = self.current - 1, self.current + 1
            if lower < 1 or (upper <= self.most and not self.down):
                n = upper
            else:
                n = lower
            self.down = not self.down
            self._recent(n).clear()
            self.trial = (n, TRIAL_BATCHES)
        return self.current if self.trial is None else self.trial[0]

    def record(self, n, seconds, samples):
        """The batch just run took ``seconds`` for ``samples`` samples at ``n`` threads."""
        recent = self._recent(n)
        recent.append(seconds / max(1, samples))
        if self.trial is not None:
            count, left = self.trial
            mine = self._recent(self.current)
            lost = mine and recent[-1] > CUT_SHORT * _median(mine)
            self.trial = (count, left - 1) if left > 1 and not lost else None
            if self.trial is None:
                self._decide(count)
            return
        self.countdown -= 1
        if len(recent) == HISTORY:
            level = _median(recent)
            if level > SLOWDOWN * self.best:  # slower than before: try another count now
                self.countdown = 0
                self.best = level
            self.best = min(self.best, level)

    def _decide(self, candidate):
        mine = self._recent(self.current)
        # the trial's best batch: its first pays for waking or parking a thread
        theirs = min(self._recent(candidate))
        if mine and theirs < (1 - MARGIN) * _median(mine):
            self.current = candidate
            self.best = theirs
            self.wait = AFTER_SWITCH
        else:
            self.wait = min(2 * self.wait, LONGEST_WAIT)
        self.countdown = self.wait


def chooser_for(net, batch, most):
    """The chooser for batches of ``batch`` samples of networks shaped like ``net``, or
    None with one thread or with :data:`sksparse_mlp.config.ADAPTIVE_THREADS` off.

    Kept from one call to the next, since the load of the machine outlives an epoch
    and ``partial_fit`` trains a copy of the network each time; one per Python thread
    (numba's thread count is per thread too), so fits running side by side in threads
    of one process do not mix their timings.
    """
    if most <= 1 or not cfg.ADAPTIVE_THREADS:
        return None
    key = (tuple(net.n_neurons), int(batch), int(most), threading.get_ident())
    chooser = _CHOOSERS.pop(key, None) or ThreadChooser(most)
    _CHOOSERS[key] = chooser
    while len(_CHOOSERS) > KEPT:
        _CHOOSERS.popitem(last=False)
    return chooser
