"""Ctrl-C and SIGTERM during training: the first asks the run to stop cleanly, the second stops it.

``StopFlag`` replaces Python's SIGINT and SIGTERM handlers while a run trains
(``with StopFlag() as stop``). SIGTERM is what a batch scheduler sends before it kills a job
(Slurm at a job's time limit or on ``scancel``, Kubernetes and systemd on a stop); ``mpiexec``
passes it on to every rank. Both signals mean the same:

- the first: ``stop.requested`` becomes True, ``stop.signum`` records which signal it was, and a
  line on stderr says what will happen; the training loop finishes the step (or the validation or
  save) under way, saves ``last.h5`` with its position and returns. The command then exits with
  128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process
  ended by that signal, so that a scheduler sees the job was stopped, not finished;
- the second: ``KeyboardInterrupt`` at once, except while ``stop.critical`` is True (the weight
  update and the counting of its step, the copy to ``best.h5``): those are never left half-done,
  so a saved checkpoint's weights and position always agree.

Only the main thread can own the handlers; elsewhere (a test runner's worker thread) the flag is
inert and the signals keep their usual meaning.

Jobs that already stop cleanly on Ctrl-C's ``KeyboardInterrupt`` (``prepare``: its cache is
resumable) run inside ``sigterm_interrupts()``, where SIGTERM raises ``Terminated``, a
``KeyboardInterrupt``, instead of ending the process wherever it is (inside an HDF5 write).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

#: The signals that ask a run to stop, and how the messages name them.
SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopFlag:
    """First Ctrl-C or SIGTERM: finish cleanly after the current step; the second: stop at once."""

    def __init__(self):
        self.requested = False
        self.critical = False  # True while the weights are being updated: never stop half-way
        self.signum = None     # the first signal received (signal.SIGINT or signal.SIGTERM)
        self._previous = {}

    @property
    def exit_status(self) -> int:
        """128 + the signal's number: 130 after Ctrl-C, 143 after SIGTERM (0 without one)."""
        return 128 + int(self.signum) if self.signum is not None else 0

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and not self.critical:
            raise KeyboardInterrupt
        if not self.requested:
            name = SIGNALS.get(signum, f"signal {signum}")
            sys.stderr.write(f"\n{name}: stopping after the current step (or the validation or "
                             f"save under way), then saving; a second {name} stops at once\n")
            sys.stderr.flush()
            self.signum = signum
        self.requested = True

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        return False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt (``sigterm_interrupts``)."""


#: Seconds between the repeats of a SIGTERM whose ``Terminated`` was lost (``sigterm_interrupts``).
RESEND_SECONDS = 0.2


@contextlib.contextmanager
def sigterm_interrupts():
    """Within the ``with``: SIGTERM raises ``Terminated``, so that a job which stops cleanly on
    Ctrl-C stops the same way on a scheduler's SIGTERM (the main thread only, as above).

    Python runs a signal's handler between two steps of the main thread, and that may be inside
    a weakref callback or a ``__del__`` (h5py's run often while a cache is written), where an
    exception is printed as "Exception ignored" and dropped: the job then ran on to its end. So
    after the first SIGTERM, a helper thread sends it again every ``RESEND_SECONDS`` until the
    ``with`` is left, and one of the repeats lands where ``Terminated`` unwinds. Python's own
    "Exception ignored" report of a dropped ``Terminated`` is left out (a traceback for a signal
    that is sent again would only alarm); a hook someone installed still hears of it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    left, lock, resending = threading.Event(), threading.Lock(), []

    def resend():
        while not left.wait(RESEND_SECONDS):
            with lock:                       # never after the handler below is gone
                if not left.is_set():
                    os.kill(os.getpid(), signal.SIGTERM)

    def handle(signum, frame):
        if left.is_set():                    # a repeat that arrived as the with was left
            return
        if not resending:                    # the first SIGTERM of this with: start the repeats
            resending.append(threading.Thread(target=resend, daemon=True))
            resending[0].start()
        raise Terminated

    def unraisable(report):                  # a dropped Terminated: no "Exception ignored"
        if not (hook is sys.__unraisablehook__ and isinstance(report.exc_value, Terminated)):
            hook(report)

    previous, hook = signal.signal(signal.SIGTERM, handle), sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        with lock:
            left.set()
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = hook
