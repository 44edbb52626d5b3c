"""Terminates a process and shows its state and exit code at each step.

The Rust version is killing_processes/src/main.rs.
"""

import argparse
import multiprocessing
import os
import signal
import time

from cli import bounded_int
import timeline


def foo():
    print("Starting function", flush=True)
    for i in range(10):
        print(f"--> {i}", flush=True)
        time.sleep(1)
    print("Finished function", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", choices=["term", "kill", "int"], default="term",
                        help="term is terminate(), kill is kill(), int is what Ctrl-C sends")
    parser.add_argument("--delay-ms", type=bounded_int(0, 60_000), default=0,
                        help="how long to let the process run before the signal")
    timeline.add_arguments(parser)
    args = parser.parse_args()
    timeline.begin(args)

    p = multiprocessing.Process(target=foo)
    print("Process before execution:", p, p.is_alive(), flush=True)
    p.start()
    print("Process running:", p, p.is_alive(), flush=True)
    time.sleep(args.delay_ms / 1000)
    if args.signal == "term":
        p.terminate()
    elif args.signal == "kill":
        p.kill()
    else:
        os.kill(p.pid, signal.SIGINT)
    print("Process terminated:", p, p.is_alive(), flush=True)
    p.join()
    print("Process joined:", p, p.is_alive())
    print("Process exit code:", p.exitcode)
