"""A Pool of worker processes mapping a function over inputs.

The Rust version is process_pool/src/main.rs.
"""

import argparse
import multiprocessing
import os
import signal
import sys
import time

from cli import bounded_int
import timeline

# The input whose task kills its worker (-1: none); the workers are forks of this
# process, so they see the value set before the Pool is created.
CRASH_AT = -1

# How long to wait for a map that may never end: Python's Pool waits forever when a
# worker dies in the middle of a task (cpython gh-66587).
HANG_GUARD_SECONDS = 5


def function_square(data):
    if data == CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)
    return data * data


def square_and_worker(data):
    return function_square(data), os.getpid()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=bounded_int(1, 64), default=4,
                        help="how many worker processes the pool forks")
    parser.add_argument("--inputs", type=bounded_int(0, 10_000_000), default=10,
                        help="map over the inputs 0..N")
    parser.add_argument("--chunksize", type=bounded_int(1, 2**63 - 1), default=None,
                        help="inputs per task sent to a worker")
    parser.add_argument("--show-workers", action="store_true",
                        help="print which worker (pid) squared which input")
    parser.add_argument("--crash-at", type=bounded_int(0, 2**63 - 1), default=None, metavar="I",
                        help="the task for input I kills its own worker with SIGKILL")
    parser.add_argument("--time", action="store_true",
                        help="print how long the map took next to the same loop in this "
                             "process, instead of the results")
    parser.add_argument("--bench", action="store_true",
                        help="measure the pool (tasks per second, start-up) instead")
    timeline.add_arguments(parser)
    args = parser.parse_args()
    if args.bench:
        import bench_pool
        rate, startup = bench_pool.measure(2, 1_000_000)
        print("Pool with 2 workers:")
        print(f"map(square) over 1000000 inputs, M tasks/s   {rate / 1e6:.1f}")
        print(f"start-up, ms                                 {startup * 1e3:.3f}")
        sys.exit(0)
    timeline.begin(args)
    if args.crash_at is not None:
        CRASH_AT = args.crash_at
    inputs = list(range(args.inputs))

    pool = multiprocessing.Pool(processes=args.workers)
    function = square_and_worker if args.show_workers else function_square
    started = time.perf_counter()
    pending = pool.map_async(function, inputs, args.chunksize)
    try:
        # Python's own map() would wait forever here if a worker died.
        outputs = pending.get(timeout=HANG_GUARD_SECONDS if args.crash_at is not None else None)
    except multiprocessing.TimeoutError:
        pool.terminate()
        sys.exit(f"Error: no result after {HANG_GUARD_SECONDS} s: a worker died during map, "
                 "and Python's Pool waits forever for its task (cpython gh-66587)")
    if args.show_workers:
        for data, (output, pid) in zip(inputs, outputs):
            print(f"input {data:>3} -> {output:>5}   by worker {pid}")
        outputs = [output for output, _ in outputs]
    pool_outputs = outputs
    pool_time = time.perf_counter() - started
    pool.close()
    pool.join()

    if args.time:
        started = time.perf_counter()
        loop_outputs = [function_square(x) for x in inputs]
        loop_time = time.perf_counter() - started
        if loop_outputs != pool_outputs:
            sys.exit("Error: the loop computed other results")
        if loop_time < pool_time:
            verdict = f"the loop is {pool_time / max(loop_time, 1e-9):.1f}x faster"
        else:
            verdict = f"the pool is {loop_time / max(pool_time, 1e-9):.1f}x faster"
        print(f"Pool map: {pool_time * 1e3:.3f} ms; the same loop in this process: "
              f"{loop_time * 1e3:.3f} ms; {verdict}")
    else:
        print("Pool    :", pool_outputs)
