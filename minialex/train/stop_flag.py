"""Ctrl-C during training: the first press asks the run to stop cleanly, the second stops it.

``StopFlag`` replaces Python's SIGINT handler while a run trains (``with StopFlag() as stop``):

- first Ctrl-C: ``stop.requested`` becomes True and a line on stderr says what will happen; the
  training loop finishes the step (or the validation or save) under way, saves ``last.h5`` with
  its position and returns;
- second Ctrl-C: ``KeyboardInterrupt`` at once, except while ``stop.critical`` is True (the weight
  update and the counting of its step, the copy to ``best.h5``): those are never left half-done,
  so a saved checkpoint's weights and position always agree.

Only the main thread can own the handler; elsewhere (a test runner's worker thread) the flag is
inert and Ctrl-C keeps its usual meaning.
"""

from __future__ import annotations

import signal
import sys
import threading


class StopFlag:
    """First Ctrl-C: finish cleanly after the current step; second Ctrl-C: stop at once."""

    def __init__(self):
        self.requested = False
        self.critical = False  # True while the weights are being updated: never stop half-way
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and not self.critical:
            raise KeyboardInterrupt
        if not self.requested:
            sys.stderr.write("\nCtrl-C: stopping after the current step (or the validation or "
                             "save under way), then saving; press Ctrl-C again to stop at once\n")
            sys.stderr.flush()
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
