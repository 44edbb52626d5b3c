"""Processes synchronised by a Barrier, printing under a Lock.

The Rust version is processes_barrier/src/main.rs.
"""

import argparse
import sys
import multiprocessing
import time
from datetime import datetime
from multiprocessing import Array, Barrier, Lock, Process, Value
from threading import BrokenBarrierError

from cli import bounded_int
import timeline


def test_with_barrier(synchronizer, serializer, arrival_delay, passed_at, slot, counter,
                      count_to, locked, gives_up):
    name = multiprocessing.current_process().name
    if arrival_delay is not None:
        time.sleep(arrival_delay)
        print(f"process {name} arrives at the barrier at {datetime.now()}", flush=True)
    try:
        synchronizer.wait()
    except BrokenBarrierError:
        if not gives_up:
            raise
        print(f"process {name} gave up: the barrier broke before its "
              f"{synchronizer.parties} parties came", flush=True)
        return
    now = time.time()
    passed_at[slot] = now
    with serializer:
        print(f"process {name} ----> {datetime.fromtimestamp(now)}", flush=True)
    for _ in range(count_to):
        if locked:
            with serializer:
                counter.value += 1
        else:
            counter.value += 1


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
    parser.add_argument("--parties", type=bounded_int(1, 64), default=None,
                        help="how many parties the barrier waits for (default: the "
                             "--with-barrier processes)")
    parser.add_argument("--timeout-ms", type=bounded_int(1, 600_000), default=None,
                        help="a barrier process gives up waiting after this many ms "
                             "(the barrier breaks); without it, it waits forever")
    parser.add_argument("--count-to", type=bounded_int(0, 100_000_000), default=0,
                        help="each barrier process adds 1 to a shared counter this many "
                             "times once it passed")
    parser.add_argument("--no-lock", action="store_true",
                        help="update the counter without the Lock")
    parser.add_argument("--stagger-ms", type=bounded_int(0, 10_000), default=0,
                        help="barrier process k arrives k times this many ms after the first")
    parser.add_argument("--bench", action="store_true",
                        help="measure the barrier (µs per generation) instead of running the demo")
    parser.add_argument("--generations", type=bounded_int(1, 10_000_000), default=20_000,
                        help="generations per measurement with --bench")
    timeline.add_arguments(parser)
    args = parser.parse_args()
    if args.bench:
        import bench_barrier
        print(f"Barrier, µs per generation ({args.generations} generations):")
        print(f"{'parties':>8} {'Python Barrier':>15}")
        for count in (2, 4):
            print(f"{count:>8} {bench_barrier.measure(count, args.generations):>15.3f}")
        sys.exit(0)
    timeline.begin(args)
    with_barrier = args.with_barrier
    parties = args.parties if args.parties is not None else with_barrier

    timeout = args.timeout_ms / 1000 if args.timeout_ms is not None else None
    synchronizer = Barrier(parties, timeout=timeout)
    serializer = Lock()
    passed_at = Array("d", with_barrier)
    # No lock of its own: the Lock above is the one the exercise removes.
    counter = Value("q", 0, lock=False)

    processes = []
    for k in range(with_barrier):
        delay = args.stagger_ms * k / 1000 if args.stagger_ms > 0 else None
        processes.append(Process(name=f"p{k + 1} - test_with_barrier", target=test_with_barrier,
                                 args=(synchronizer, serializer, delay, passed_at, k, counter,
                                       args.count_to, not args.no_lock, timeout is not None)))
    for k in range(args.without):
        processes.append(Process(name=f"p{with_barrier + k + 1} - test_without_barrier",
                                 target=test_without_barrier))
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"process {process.name} failed")

    if 0 in passed_at[:]:
        print("No barrier process passed: the barrier broke")
    else:
        spread = max(passed_at) - min(passed_at)
        print(f"The {with_barrier} barrier processes passed within {spread * 1000:.3f} ms "
              "of each other")
        if args.count_to > 0:
            expected = args.count_to * with_barrier
            print(f"Counter: {counter.value} of {expected} increments "
                  f"({expected - min(counter.value, expected)} lost)")
