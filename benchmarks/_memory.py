"""Per-fit peak memory and wall time, for the worker processes.

Plain Python (standard library only): imported by the mahal worker and by the peer
worker, which runs under another virtualenv's interpreter.

Peak memory of a fit = (peak resident set size during the fit) − (resident set size
just before the fit), in bytes.  Before the fit, garbage is collected and glibc's
``malloc_trim(0)`` returns freed heap pages to the OS, so that memory a previous fit in
the same process freed but kept resident is not silently reused (which would hide the
fit's allocations).  On Linux the kernel's high-water mark ``VmHWM`` is
reset to the current RSS before the fit by writing ``5`` to ``/proc/self/clear_refs``
and read from ``/proc/self/status`` after it, so each fit of a process that does several
fits gets its own exact peak.  Where ``clear_refs`` is not writable (not Linux, or
restricted) the fallback is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the fit
minus the RSS before it, which is exact for the first fit of a process and a lower
bound afterwards; the ``memory_method`` field says which was used.
"""

import time


def _status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kib():
    import resource
    import sys
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r


def _malloc_trim():
    """Give freed heap memory back to the OS (glibc), so that a fit's allocations
    show up as RSS growth instead of silently reusing pages a previous fit freed."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass


def measure(fn):
    """Call ``fn()``; return ``(result, seconds, peak_bytes, method)``."""
    import gc
    gc.collect()
    _malloc_trim()
    rss0 = _status_kib("VmRSS")
    exact = rss0 is not None and _reset_hwm()
    if rss0 is None:
        rss0 = _maxrss_kib()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    if exact:
        peak = _status_kib("VmHWM")
        method = "VmHWM"
    else:
        peak = _maxrss_kib()
        method = "ru_maxrss"
    peak_bytes = max(0, (peak - rss0)) * 1024
    return result, seconds, peak_bytes, method

