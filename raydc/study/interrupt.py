"""SIGINT (a terminal's Ctrl-C) and SIGTERM (a scheduler's preemption) stop a study run between steps of Ray Tune's
loop: the handler only notes the signal, a Tune stopper ends the experiment (each running trial keeps its last
checkpoint and journal), and the command then exits 128 + the signal with raydc's resume command. A second signal
ends the process at once, as it would without raydc."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from ray import tune

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest(tune.Stopper):
    """Set by the first signal; Tune asks stop_all() at every step of its loop."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.arm: Callable[[], None] = lambda: None  # (re)installs the handlers: ray.init replaces SIGTERM's

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.signum is not None

    def raise_if_set(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


@contextmanager
def interruptible() -> Iterator[StopRequest]:
    """Note SIGINT and SIGTERM in the returned request while the block runs (main thread only)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield request
        return

    def note(signum: int, frame: object) -> None:
        if request.signum is not None:  # the second one: no more waiting
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        request.signum = signum

    def arm() -> None:
        for s in SIGNALS:
            signal.signal(s, note)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    request.arm = arm
    arm()
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
