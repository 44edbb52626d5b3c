"""Prints the cost of one multiprocessing primitive, for `compare bench`.

--row start-join: microseconds per Process().start() + join() of an empty target.
--row lock-1: nanoseconds per Lock acquire + release, in one process.
--row lock-2: nanoseconds per Lock acquire + release, two processes contending.
"""

import argparse
import multiprocessing
import time

from cli import bounded_int


def nothing():
    pass


def start_join(count):
    started = time.perf_counter()
    for _ in range(count):
        p = multiprocessing.Process(target=nothing)
        p.start()
        p.join()
    return (time.perf_counter() - started) / count * 1e6


def lock_loop(lock, count):
    for _ in range(count):
        lock.acquire()
        lock.release()


def lock_1(count):
    lock = multiprocessing.Lock()
    started = time.perf_counter()
    lock_loop(lock, count)
    return (time.perf_counter() - started) / count * 1e9


def lock_2(count):
    lock = multiprocessing.Lock()
    processes = [multiprocessing.Process(target=lock_loop, args=(lock, count)) for _ in range(2)]
    started = time.perf_counter()
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    return (time.perf_counter() - started) / (2 * count) * 1e9


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", choices=["start-join", "lock-1", "lock-2"], required=True)
    parser.add_argument("--count", type=bounded_int(1, 100_000_000), default=1000)
    args = parser.parse_args()
    measure = {"start-join": start_join, "lock-1": lock_1, "lock-2": lock_2}[args.row]
    print(f"{measure(args.count):.3f}")
