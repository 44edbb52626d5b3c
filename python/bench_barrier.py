"""Prints the microseconds per generation of multiprocessing.Barrier for N processes.

Used by `cargo run --release -p processes_barrier -- --bench`.
"""

import argparse
import multiprocessing
import time

from cli import bounded_int


def party(barrier, generations, results, slot):
    barrier.wait()
    started = time.perf_counter()
    for _ in range(generations):
        barrier.wait()
    results[slot] = time.perf_counter() - started


def measure(parties, generations):
    """Microseconds per generation of a Barrier of `parties` processes."""
    barrier = multiprocessing.Barrier(parties)
    results = multiprocessing.Array("d", parties)
    processes = [multiprocessing.Process(target=party, args=(barrier, generations, results, i))
                 for i in range(parties)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    return max(results) / generations * 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=bounded_int(1, 64), default=2)
    parser.add_argument("--generations", type=bounded_int(1, 10_000_000), default=2000)
    args = parser.parse_args()
    print(f"{measure(args.parties, args.generations):.3f}")
