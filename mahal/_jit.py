"""numba in one place: the ``njit`` of mahal's kernel modules, and a notice when a
process spends more than a second compiling them.

numba compiles a kernel on its first call on a machine and caches the machine code
on disk (``cache=True``; the directory is numba's, see ``NUMBA_CACHE_DIR``), so the
first fits of a fresh installation pay seconds of compilation that later sessions do
not. So that a user is not left waiting without a word, the first time compiling
mahal's kernels has taken more than ``NOTICE_AFTER`` seconds in a process (summed over
kernels), one message goes to the ``"mahal"`` logger (level WARNING, so that it shows
without any logging set up). ``python -m mahal.compile`` compiles everything ahead.
"""

import logging
import threading
import time

from numba import njit
from numba.core import event

__all__ = ["njit"]

logger = logging.getLogger("mahal")

NOTICE_AFTER = 1.0  # seconds of compilation before the notice
MESSAGE = ("mahal is compiling its numba kernels for this machine; this happens "
           "once (they are cached on disk) and takes a few seconds. Run "
           "`python -m mahal.compile` to compile them all ahead.")


class _CompileNotice(event.Listener):
    """Times the compilations of mahal's functions (those that numba's own code
    compiled for them included) and logs :data:`MESSAGE` once, from a timer thread
    while the compilation that crosses :data:`NOTICE_AFTER` runs, or at its end."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        self.said = False
        self.spent = 0.0  # seconds of finished compilations
        self._depth = 0
        self._start = None
        self._timer = None

    def _say(self):
        with self._lock:
            if self.said:
                return
            self.said = True
        logger.warning(MESSAGE)

    def on_start(self, ev):
        if self.said:
            return
        if self._depth == 0:
            func = getattr(ev.data["dispatcher"], "py_func", None)
            if not getattr(func, "__module__", "").startswith("mahal."):
                return
            self._start = time.perf_counter()
            self._timer = threading.Timer(max(0.0, NOTICE_AFTER - self.spent),
                                          self._say)
            self._timer.daemon = True
            self._timer.start()
        self._depth += 1

    def on_end(self, ev):
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:
            self._timer.cancel()
            self.spent += time.perf_counter() - self._start
            if self.spent > NOTICE_AFTER:
                self._say()


notice = _CompileNotice()
event.register("numba:compile", notice)
