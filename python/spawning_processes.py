"""Spawns processes in a loop, each doing a workload that grows with its number.

The Rust version is spawning_processes/src/main.rs.
"""

import argparse
import multiprocessing
import time

from cli import bounded_int
from do_something import do_something
import timeline


def my_func(i, unit):
    print(f"calling myFunc from process n°: {i}", flush=True)
    output = do_something(i * unit)
    print(f"output from myFunc n°: {i} is a list of {len(output)} values", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=bounded_int(0, 256), default=6,
                        help="how many processes to spawn (numbered from 0)")
    parser.add_argument("--unit", type=bounded_int(0, 10_000_000), default=1000,
                        help="random numbers per unit of work: process i makes i * unit")
    parser.add_argument("--sequential", action="store_true",
                        help="start and join each process before starting the next")
    timeline.add_arguments(parser)
    args = parser.parse_args()
    timeline.begin(args)
    start_time = time.perf_counter()

    if args.sequential:
        for i in range(args.processes):
            process = multiprocessing.Process(target=my_func, args=(i, args.unit))
            process.start()
            process.join()
    else:
        processes = []
        for i in range(args.processes):
            process = multiprocessing.Process(target=my_func, args=(i, args.unit))
            process.start()
            processes.append(process)
        for process in processes:
            process.join()
    print(f"Total time: {time.perf_counter() - start_time:.3f} s", flush=True)
