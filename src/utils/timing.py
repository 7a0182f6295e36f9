"""Wall-clock timing for the benchmark scripts."""
import statistics
import time


def median_ms(fn, warmup, runs):
    """Median wall time of ``fn()`` in milliseconds over ``runs`` calls, after ``warmup`` untimed calls.

    ``runs`` must be >= 1. The benchmarks compare files timed in the same process, one after the
    other (ratios): this machine is shared, so absolute times drift by 10-20% over minutes."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
