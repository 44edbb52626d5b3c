"""Two processes, one named and one with the default name, each filling a list.

The Rust version is naming_processes/src/main.rs.
"""

import argparse
import multiprocessing
import time

from cli import bounded_int
from do_something import do_something
import timeline


def my_func(count, out_list, shared):
    name = multiprocessing.current_process().name
    print(f"Starting process name = {name}", flush=True)
    do_something(count, out_list)
    shared[:] = out_list
    print(f"Exiting process name = {name}, list length = {len(out_list)}", flush=True)


def written(shared):
    return sum(1 for value in shared if value != 0.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=bounded_int(1, 20_000_000), default=1000,
                        help="how many random numbers each process appends to its list")
    timeline.add_arguments(parser)
    args = parser.parse_args()
    timeline.begin(args)
    start_time = time.perf_counter()
    out_list = []
    shared_1 = multiprocessing.Array("d", args.count)
    shared_2 = multiprocessing.Array("d", args.count)

    process_with_name = multiprocessing.Process(
        name="do_something process 1", target=my_func, args=(args.count, out_list, shared_1))
    process_with_default_name = multiprocessing.Process(
        target=my_func, args=(args.count, out_list, shared_2))

    process_with_name.start()
    process_with_default_name.start()

    process_with_name.join()
    process_with_default_name.join()

    print(f"In the parent: out_list has {len(out_list)} values, "
          f"the shared arrays hold {written(shared_1)} and {written(shared_2)}")
    print(f"Total time: {time.perf_counter() - start_time:.3f} s")
