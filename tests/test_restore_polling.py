"""`restore --wait`'s back-off (archiver/restore/run.py `poll_until_done`): each pass advances every
job; waits double from --poll up to MAX_POLL_SECONDS, and stop at --timeout or when nothing is
pending. A clock and a sleep that only count stand in for hours of a Glacier thaw."""

from __future__ import annotations

from archiver.restore.run import MAX_POLL_SECONDS, JobView, poll_until_done


def job(state: str) -> JobView:
    return JobView(1, "shoes/a.png", "file:///hot", "original", "Bulk", state, None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_waits_double_up_to_the_bound_until_the_job_is_done() -> None:
    clock = Clock()
    heard: list[float] = []
    states = iter(["waiting"] * 9 + ["done"])
    jobs = poll_until_done(
        lambda passes: [job(next(states))],
        wait=True,
        timeout=None,
        poll=2.0,
        on_wait=lambda jobs, interval: heard.append(interval),
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    assert [j.state for j in jobs] == ["done"]
    assert clock.slept == [2, 4, 8, 16, 32, 64, 128, 256, MAX_POLL_SECONDS] == heard


def test_without_wait_one_pass_and_with_a_timeout_no_wait_past_it() -> None:
    clock = Clock()
    once = poll_until_done(
        lambda passes: [job("waiting")], wait=False, timeout=None, poll=2.0, sleep=clock.sleep
    )
    assert [j.state for j in once] == ["waiting"] and clock.slept == []
    passes: list[int] = []

    def advance(n: int) -> list[JobView]:
        passes.append(n)
        return [job("waiting")]

    left = poll_until_done(
        advance, wait=True, timeout=20.0, poll=2.0, sleep=clock.sleep, clock=lambda: clock.now
    )
    assert [j.state for j in left] == ["waiting"]
    assert clock.slept == [2, 4, 8] and passes == [1, 2, 3, 4]  # a 16 s wait would pass the 20 s
