"""Resource figures reported by training, annotation and the benchmark."""

from __future__ import annotations

import os
import sys


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes); 0 where
    the platform cannot tell (Windows)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux `/proc`, else psutil if installed);
    0 where neither can tell."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil
    except ImportError:
        return 0
    return int(psutil.Process().memory_info().rss)


class RssSampler:
    """The peak of `current_rss_bytes` since the last `reset`, sampled in a thread: a
    per-phase peak inside one process, which `peak_rss_bytes` (monotone) cannot give."""

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.interval = interval
        self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss_bytes())

    def reset(self) -> int:
        """Start a new phase; returns the RSS now (bytes)."""
        self.peak = now = current_rss_bytes()
        return now

    def stop(self) -> int:
        """Stop sampling; returns the phase's peak (bytes)."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())
        return self.peak
