"""Prints Pool(N).map(square) tasks per second and Pool(N) start-up seconds.

Used by `cargo run --release -p process_pool -- --bench`.
"""

import argparse
import multiprocessing
import time

from cli import bounded_int
from do_something import square

def measure(workers, inputs):
    """map(square) tasks per second (best of three) and start-up seconds (best of five)."""
    startup = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        pool = multiprocessing.Pool(workers)
        pool.apply(square, (1,))
        startup = min(startup, time.perf_counter() - started)
        pool.terminate()
        pool.join()

    with multiprocessing.Pool(workers) as pool:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            pool.map(square, range(inputs))
            best = min(best, time.perf_counter() - started)
    return inputs / best, startup


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=bounded_int(1, 64), default=2)
    parser.add_argument("--inputs", type=bounded_int(1, 10_000_000), default=1_000_000)
    args = parser.parse_args()
    rate, startup = measure(args.workers, args.inputs)
    print(f"{rate:.0f} {startup:.6f}")
