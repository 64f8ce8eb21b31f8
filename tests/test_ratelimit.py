"""The sending pace: mailer.RateLimiter, a token bucket with an injectable clock (design §11.7).

Most cases drive it with a fake clock whose `sleep` only moves time on, so
pacing is checked exactly and instantly; one case uses real threads and the
real clock to show it is thread-safe.
"""
from __future__ import annotations

import threading
import time

import pytest

from mailer import RateLimiter


class FakeClock:
    """time.monotonic and time.sleep for one test: sleeping moves the clock on, instantly."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "never asked to sleep for nothing"
        with self._lock:
            # A wait too short to move any clock means the limiter would spin for ever
            # (rounding left it a hair under one token): fail now rather than hang.
            assert self.now + seconds != self.now, (
                f"asked to sleep {seconds!r} s at t={self.now!r}: too short to move a clock, "
                f"so acquire() can never finish")
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def limiter(rate: float, clock: FakeClock, **kwargs) -> RateLimiter:
    return RateLimiter(rate, clock=clock, sleep=clock.sleep, **kwargs)


@pytest.mark.parametrize("rate,n", [(1, 5), (14, 100), (50, 500), (1000, 2000), (0.5, 4)])
def test_n_acquires_take_n_minus_one_over_rate(rate, n):
    clock = FakeClock()
    bucket = limiter(rate, clock)
    start = clock()
    for _ in range(n):
        bucket.acquire()
    elapsed = clock() - start
    expected = (n - 1) / rate
    assert elapsed == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("rate,n", [(14, 100), (1000, 3000)])
def test_the_pace_holds_between_any_two_acquires(rate, n):
    """Over any window, at most burst + rate × window messages go out."""
    clock = FakeClock()
    bucket = limiter(rate, clock)
    stamps = []
    for _ in range(n):
        bucket.acquire()
        stamps.append(clock())
    burst = bucket.burst
    for i in range(0, n, max(1, n // 50)):
        for j in range(i + 1, n, max(1, n // 50)):
            window = stamps[j] - stamps[i]
            assert j - i <= burst + rate * window + 1e-6


def test_after_idling_at_most_burst_go_at_once():
    clock = FakeClock()
    bucket = limiter(100, clock)  # default burst: a tenth of a second's worth
    assert bucket.burst == 10
    clock.advance(3600)  # an hour idle must not save up an hour of messages
    at_once = 0
    while not clock.sleeps:
        bucket.acquire()
        at_once += 1
    assert at_once - 1 == 10  # the last acquire had to wait
    # and from then on the pace is the rate again
    before = clock()
    for _ in range(100):
        bucket.acquire()
    assert clock() - before == pytest.approx(100 / 100, rel=1e-6)


def test_an_explicit_burst_is_honoured_and_time_accounts_for_it():
    clock = FakeClock()
    bucket = limiter(10, clock, burst=5)
    clock.advance(60)
    start = clock()
    for _ in range(25):
        bucket.acquire()
    # 5 saved up, 20 paced at 10/s
    assert clock() - start == pytest.approx(20 / 10, rel=1e-6)


def test_the_first_acquire_does_not_wait_and_no_burst_at_start():
    clock = FakeClock()
    bucket = limiter(1000, clock)  # burst 100, but a new limiter starts with one token
    bucket.acquire()
    assert clock.sleeps == []
    bucket.acquire()
    assert clock.sleeps and sum(clock.sleeps) == pytest.approx(1 / 1000)


def test_a_low_rate_is_paced_too():
    clock = FakeClock()
    bucket = limiter(0.2, clock)  # one every five seconds; burst is at least one
    start = clock()
    for _ in range(3):
        bucket.acquire()
    assert clock() - start == pytest.approx(10.0)


@pytest.mark.parametrize("rate", [0, -1, -0.001])
def test_a_rate_that_is_not_positive_is_refused(rate):
    with pytest.raises(ValueError):
        RateLimiter(rate)


def test_thread_safe_with_real_threads_and_the_real_clock():
    rate, threads, each = 1000, 4, 50
    bucket = RateLimiter(rate)
    stamps: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(each):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    started = time.monotonic()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=10)
    elapsed = time.monotonic() - started
    assert len(stamps) == threads * each
    n = threads * each
    # never faster than the rate (a little slack for clock reads outside the lock) ...
    assert elapsed >= (n - 1) / rate - 0.01
    # ... and not much slower: the threads did not serialise on sleeps
    assert elapsed < 1.0
    stamps.sort()
    burst = bucket.burst
    for i in range(0, n, 10):
        for j in range(i + 1, n, 10):
            assert j - i <= burst + rate * (stamps[j] - stamps[i]) + 2


def test_fake_clock_with_threads_hands_out_every_token_once():
    clock = FakeClock()
    bucket = limiter(50, clock)
    count = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        nonlocal count
        try:
            for _ in range(25):
                bucket.acquire()
                with lock:
                    count += 1
        except BaseException as exc:  # shown by the assertion below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=10)
    assert errors == []
    assert count == 100
    # sleeping threads may overlap on a fake clock, so only the lower bound is exact
    assert clock() - 1000.0 >= 99 / 50 - 1e-6
