"""Processes synchronised by a Barrier, printing under a Lock.

The Rust version is processes_barrier/src/main.rs.
"""

import argparse
import sys
import multiprocessing
import time
from datetime import datetime
from multiprocessing import Array, Barrier, Lock, Process

from cli import bounded_int


def test_with_barrier(synchronizer, serializer, arrival_delay, passed_at, slot):
    name = multiprocessing.current_process().name
    if arrival_delay is not None:
        time.sleep(arrival_delay)
        print(f"process {name} arrives at the barrier at {datetime.now()}", flush=True)
    synchronizer.wait()
    now = time.time()
    passed_at[slot] = now
    with serializer:
        print(f"process {name} ----> {datetime.fromtimestamp(now)}", flush=True)


def test_without_barrier():
    name = multiprocessing.current_process().name
    now = time.time()
    print(f"process {name} ----> {datetime.fromtimestamp(now)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-barrier", type=bounded_int(1, 64), default=2,
                        help="how many processes wait at the barrier (its parties)")
    parser.add_argument("--without", type=bounded_int(0, 64), default=2,
                        help="how many processes print at once, without the barrier")
    parser.add_argument("--stagger-ms", type=bounded_int(0, 10_000), default=0,
                        help="barrier process k arrives k times this many ms after the first")
    parser.add_argument("--bench", action="store_true",
                        help="measure the barrier (µs per generation) instead of running the demo")
    parser.add_argument("--generations", type=bounded_int(1, 10_000_000), default=20_000,
                        help="generations per measurement with --bench")
    args = parser.parse_args()
    if args.bench:
        import bench_barrier
        print(f"Barrier, µs per generation ({args.generations} generations):")
        print(f"{'parties':>8} {'Python Barrier':>15}")
        for count in (2, 4):
            print(f"{count:>8} {bench_barrier.measure(count, args.generations):>15.3f}")
        sys.exit(0)
    parties = args.with_barrier

    synchronizer = Barrier(parties)
    serializer = Lock()
    passed_at = Array("d", parties)

    processes = []
    for k in range(parties):
        delay = args.stagger_ms * k / 1000 if args.stagger_ms > 0 else None
        processes.append(Process(name=f"p{k + 1} - test_with_barrier", target=test_with_barrier,
                                 args=(synchronizer, serializer, delay, passed_at, k)))
    for k in range(args.without):
        processes.append(Process(name=f"p{parties + k + 1} - test_without_barrier",
                                 target=test_without_barrier))
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"process {process.name} failed")

    spread = max(passed_at) - min(passed_at)
    print(f"The {parties} barrier processes passed within {spread * 1000:.3f} ms of each other")
