"""Stopping a long run cleanly.

Inside `StopOnSignals`, the first SIGINT (Ctrl-C) or SIGTERM does not interrupt anything: it only
records the request, and the training loop stops at the end of the current iteration, where the
rule, optimizer and checkpoint are consistent and can be saved. A second signal stops at once
(KeyboardInterrupt). Handlers can only be installed from the main thread; elsewhere this does
nothing and Ctrl-C keeps Python's usual behaviour.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    def __init__(self, on_request: Callable[[str], None] | None = None):
        self.signal: int | None = None  # the first signal received
        self._on_request = on_request
        self._previous: dict = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored on purpose (a background job): keep it so
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        if self._on_request:
            self._on_request(signal.Signals(signum).name)
