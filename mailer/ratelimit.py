"""A token bucket shared by the sending threads, with an injectable clock.

Tokens accrue at `rate` per second up to `burst`; `acquire` takes one,
sleeping until it is there. Tests drive it with a fake clock and sleep, so
pacing is checked without waiting.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, *, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)  # smooth: at most 0.1 s at once
        self.clock, self.sleep = clock, sleep
        self._tokens = 1.0  # start with one message, not a burst
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> bool:
        """Take a token if one is there now; never waits."""
        with self._lock:
            self._refill()
            if self._tokens >= 1 - 1e-9:
                self._tokens -= 1
                return True
            return False

    def acquire(self) -> None:
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1 - 1e-9:  # float rounding must not leave us a hair short forever
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            self.sleep(wait)
