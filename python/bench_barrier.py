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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=bounded_int(1, 64), default=2)
    parser.add_argument("--generations", type=bounded_int(1, 10_000_000), default=2000)
    args = parser.parse_args()
    barrier = multiprocessing.Barrier(args.parties)
    results = multiprocessing.Array("d", args.parties)
    processes = [multiprocessing.Process(target=party, args=(barrier, args.generations, results, i))
                 for i in range(args.parties)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    print(f"{max(results) / args.generations * 1e6:.3f}")
