"""Prints the cost of one multiprocessing primitive, for `compare bench`.

--row start-join: microseconds per Process().start() + join() of an empty target.
--row lock-1: nanoseconds per Lock acquire + release, in one process.
--row lock-2: nanoseconds per Lock acquire + release, two processes contending.
--row queue-8, queue-4k: items per second through a Queue, one producer process to
  one consumer, items of 8 bytes or 4 KiB.
--row pipe-rtt: microseconds per round trip of a small int through a Pipe and back.
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


def produce(queue, count, size):
    item = b"\xa5" * size
    for _ in range(count):
        queue.put(item)


def queue_rate(count, size):
    queue = multiprocessing.Queue()
    producer = multiprocessing.Process(target=produce, args=(queue, count, size))
    started = time.perf_counter()
    producer.start()
    for _ in range(count):
        queue.get()
    elapsed = time.perf_counter() - started
    producer.join()
    return count / elapsed


def echo(conn, parents_end):
    # fork() gave this child a copy of the parent's end: close it, or recv() never
    # sees the end of file when the parent closes its own.
    parents_end.close()
    while True:
        try:
            conn.send(conn.recv())
        except EOFError:
            return


def pipe_rtt(count):
    ours, childs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=echo, args=(childs, ours))
    child.start()
    childs.close()
    ours.send(0)
    ours.recv()
    started = time.perf_counter()
    for n in range(count):
        ours.send(n)
        ours.recv()
    elapsed = time.perf_counter() - started
    ours.close()
    child.join()
    return elapsed / count * 1e6


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", required=True,
                        choices=["start-join", "lock-1", "lock-2", "queue-8", "queue-4k",
                                 "pipe-rtt"])
    parser.add_argument("--count", type=bounded_int(1, 100_000_000), default=1000)
    args = parser.parse_args()
    measure = {"start-join": start_join, "lock-1": lock_1, "lock-2": lock_2,
               "queue-8": lambda count: queue_rate(count, 8),
               "queue-4k": lambda count: queue_rate(count, 4096),
               "pipe-rtt": pipe_rtt}[args.row]
    print(f"{measure(args.count):.3f}")
