"""The compilation notice of :mod:`mahal._jit`."""

import logging

import numpy as np
import pytest

from mahal import _jit


def _fresh_kernel(module, tag):
    """A new, uncached numba function whose ``__module__`` is ``module`` (a fresh
    dispatcher: its first call compiles, whatever is cached)."""
    ns = {"__name__": module}
    exec(f"def kernel_{tag}(x):\n    s = 0.0\n    for v in x:\n        s += v * {tag}\n"
         "    return s\n", ns)
    return _jit.njit(cache=False)(ns[f"kernel_{tag}"])


@pytest.fixture
def notice(monkeypatch, caplog):
    """The listener with a clean state (restored afterwards), and the captured
    records of the ``mahal`` logger."""
    saved = dict(vars(_jit.notice))
    _jit.notice.reset()
    caplog.set_level(logging.WARNING, logger="mahal")
    yield lambda: [r for r in caplog.records if r.getMessage() == _jit.MESSAGE]
    vars(_jit.notice).update(saved)


def test_notice_once_when_compiling_takes_longer(notice, monkeypatch):
    monkeypatch.setattr(_jit, "NOTICE_AFTER", 0.0)
    x = np.arange(4.0)
    assert _fresh_kernel("mahal._probe", 3)(x) == 18.0
    assert len(notice()) == 1
    assert notice()[0].levelno == logging.WARNING
    _fresh_kernel("mahal._probe", 5)(x)  # compiles again: no second message
    assert len(notice()) == 1


def test_no_notice_below_the_threshold_or_for_other_code(notice, monkeypatch):
    x = np.arange(4.0)
    monkeypatch.setattr(_jit, "NOTICE_AFTER", 1e9)
    _fresh_kernel("mahal._probe", 7)(x)
    assert notice() == [] and _jit.notice.spent > 0.0
    # a user's own numba code is none of mahal's business
    monkeypatch.setattr(_jit, "NOTICE_AFTER", 0.0)
    _jit.notice.reset()
    _fresh_kernel("user_code", 11)(x)
    assert notice() == [] and _jit.notice.spent == 0.0


def test_compilation_time_adds_up_over_kernels(notice, monkeypatch):
    x = np.arange(4.0)
    _fresh_kernel("mahal._probe", 13)(x)
    first = _jit.notice.spent
    assert first > 0.0 and notice() == []
    # the next compilation crosses a threshold set just above the time spent so far
    monkeypatch.setattr(_jit, "NOTICE_AFTER", first * 1.0001)
    _fresh_kernel("mahal._probe", 17)(x)
    assert len(notice()) == 1


def test_kernel_module_first_used_from_several_threads_at_once():
    # Threads that reach a lazy kernel module while another thread is still
    # importing it wait for the import (they used to get the partly initialised
    # module: "has no attribute ..."). In a fresh process, so that the module is
    # not imported yet.
    from _fresh_process import fresh_output

    out = fresh_output(
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from mahal._lazy import lazy_module\n"
        "k = lazy_module('mahal._lmnn_multi_kernels')\n"
        "with ThreadPoolExecutor(4) as ex:\n"
        "    print(sum(ex.map(lambda _: callable(k.anchor_pass), range(8))))\n")
    assert out.strip() == "8"
