"""Resource figures reported by training, annotation and the benchmark, and the machine
and package versions a figure was measured with."""

from __future__ import annotations

import os
import sys


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# /proc/cpuinfo flags of CPUs with native bf16 matrix instructions (AVX512-BF16, AMX):
# there CPU autocast to bf16 speeds a LoRA step up ~1.5x; elsewhere it emulates and slows.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


CPUINFO_PATH = "/proc/cpuinfo"


def _first_cpu_fields(path: str = CPUINFO_PATH) -> dict[str, str]:
    """The first processor's block of Linux `/proc/cpuinfo` as fields (empty where the
    file cannot be read)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_has_bf16(cpuinfo: str = CPUINFO_PATH) -> bool:
    """Whether this CPU has native bf16 instructions (Linux `/proc/cpuinfo` flags; False
    where the file cannot be read)."""
    flags = _first_cpu_fields(cpuinfo).get("flags", "").split()
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def cpu_description(cpuinfo: str = CPUINFO_PATH) -> str | None:
    """The CPU a figure was measured on, e.g. ``AuthenticAMD family 26 model 2 (AMD
    EPYC)`` (Linux `/proc/cpuinfo`; None elsewhere). Sessions here land on different
    CPUs, and numeric kernels (BLIS, oneDNN) choose their code paths by CPU, so a result
    that moves between two runs of the same command should say where each ran."""
    fields = _first_cpu_fields(cpuinfo)
    if not fields:
        return None
    vendor = fields.get("vendor_id", "unknown vendor")
    name = fields.get("model name", "")
    shape = f"{vendor} family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    return f"{shape} ({name})" if name else shape


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the distributions `names` (those not installed are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def limit_torch_threads(cores: int | None = None) -> int:
    """Cap torch's intra-op threads at the cores this process may use (`available_cores`,
    or `cores`): two 2-thread torch processes on two cores ran up to 50x slower than one.
    Never raises the count (a user's lower OMP_NUM_THREADS stays). Returns the count."""
    import torch

    limit = max(1, cores if cores is not None else available_cores())
    if torch.get_num_threads() > limit:
        torch.set_num_threads(limit)
    return torch.get_num_threads()


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
