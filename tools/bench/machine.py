"""Machine-load helpers shared by the benchmark scripts (Linux /proc only).

The benchmark machine is shared (other people's `cargo build`s run on the
same two cores), and a busy neighbour slows a 2-thread OpenMP or rayon step
far more than its share of the CPU: when one of the two worker threads is
descheduled the other waits at the next barrier for a whole time slice. So
every measurement here (a) waits, up to a timeout, for the machine to be
quiet before it starts, and (b) records how much CPU *other* processes used
while it ran, so that a noisy figure can be recognised as such.
"""

import os
import resource
import time

_CLK = os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU-seconds spent busy by all CPUs since boot (user+nice+system+irq+softirq+steal)."""
    with open("/proc/stat") as fh:
        f = fh.readline().split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in f[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLK


def own_seconds():
    """CPU-seconds used by this process (all threads) and its waited-for children."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class LoadMeter:
    """Measures the average number of cores used by *other* processes over an interval."""

    def __init__(self):
        self.t0, self.b0, self.o0 = time.perf_counter(), busy_seconds(), own_seconds()

    def others_cores(self):
        wall = time.perf_counter() - self.t0
        if wall <= 0:
            return 0.0
        other = (busy_seconds() - self.b0) - (own_seconds() - self.o0)
        return max(0.0, other / wall)


def others_now(window=0.5):
    """Cores used by other processes over the next `window` seconds (we sleep meanwhile)."""
    m = LoadMeter()
    time.sleep(window)
    return m.others_cores()


def wait_quiet(threshold=0.25, timeout=60.0, window=0.5, log=None):
    """Sleeps until other processes use less than `threshold` cores over a
    `window`, or `timeout` seconds have passed. Returns the last reading."""
    start = time.perf_counter()
    load = others_now(window)
    waited = False
    while load > threshold and time.perf_counter() - start < timeout:
        if log and not waited:
            log(f"machine busy ({load:.2f} other cores); waiting up to {timeout:.0f}s for it to calm down")
        waited = True
        load = others_now(window)
    if log and waited:
        log(f"  ... {'quiet' if load <= threshold else 'still busy'} after {time.perf_counter() - start:.1f}s "
            f"({load:.2f} other cores)")
    return load


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
