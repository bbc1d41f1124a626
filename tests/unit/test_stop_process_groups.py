"""`make ui`'s Ctrl-C (sandbox.demo.stop_process_groups): the grace is for all components together."""

import signal
import subprocess

import sandbox.demo as demo


class Stubborn:
    """A component that ignores SIGTERM: each wait lasts its whole timeout, on the injected clock."""

    def __init__(self, pid: int, clock: list[float]):
        self.pid, self.clock, self.waits = pid, clock, []

    def wait(self, timeout: float | None = None) -> int:
        self.waits.append(timeout)
        if timeout is None:  # after SIGKILL: reaped at once
            return -9
        self.clock[0] += timeout
        raise subprocess.TimeoutExpired("airflow", timeout)


def test_components_that_ignore_sigterm_are_killed_once_the_one_grace_has_passed(monkeypatch):
    clock = [1000.0]
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(demo.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(demo.os, "killpg", lambda pid, sig: signals.append((pid, sig)))
    procs = [Stubborn(pid, clock) for pid in (11, 12, 13, 14)]

    demo.stop_process_groups(procs, grace=30)  # type: ignore[arg-type]

    assert clock[0] == 1030.0  # 30 s in all, not 30 s for each of the four
    assert [p.waits for p in procs] == [[30.0, None], [0.0, None], [0.0, None], [0.0, None]]
    assert signals == [(pid, signal.SIGTERM) for pid in (11, 12, 13, 14)] + [
        (pid, signal.SIGKILL) for pid in (11, 12, 13, 14)
    ]
