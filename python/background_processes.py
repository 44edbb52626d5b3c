"""A daemonic and a non-daemonic process, left running when the main program ends.

The Rust version is background_processes/src/main.rs.
"""

import argparse
import multiprocessing
import time

from cli import bounded_int
import timeline


def foo():
    name = multiprocessing.current_process().name
    print(f"Starting {name}", flush=True)
    numbers = range(0, 5) if name == "background_process" else range(5, 10)
    for i in numbers:
        print(f"---> {i}", flush=True)
    time.sleep(1)
    print(f"Exiting {name}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-daemons", action="store_true",
                        help="make background_process non-daemonic too")
    parser.add_argument("--wait-ms", type=bounded_int(0, 60_000), default=0,
                        help="how long the main program sleeps before it ends")
    timeline.add_arguments(parser)
    args = parser.parse_args()
    timeline.begin(args)

    background_process = multiprocessing.Process(name="background_process", target=foo)
    background_process.daemon = not args.no_daemons
    NO_background_process = multiprocessing.Process(name="NO_background_process", target=foo)
    NO_background_process.daemon = False

    background_process.start()
    NO_background_process.start()

    time.sleep(args.wait_ms / 1000)
