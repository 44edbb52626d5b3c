"""Two processes, one named and one with the default name, each filling a list.

The Rust version is naming_processes/src/main.rs.
"""

import argparse
import multiprocessing
import time

from cli import bounded_int
from do_something import do_something


def my_func(count):
    name = multiprocessing.current_process().name
    print(f"Starting process name = {name}", flush=True)
    out_list = []
    do_something(count, out_list)
    print(f"Exiting process name = {name}, list length = {len(out_list)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=bounded_int(0, 100_000_000), default=1000,
                        help="how many random numbers each process appends to its list")
    args = parser.parse_args()
    start_time = time.perf_counter()

    process_with_name = multiprocessing.Process(
        name="do_something process 1", target=my_func, args=(args.count,))
    process_with_default_name = multiprocessing.Process(target=my_func, args=(args.count,))

    process_with_name.start()
    process_with_default_name.start()

    process_with_name.join()
    process_with_default_name.join()

    print(f"Total time: {time.perf_counter() - start_time:.3f} s")
