"""Producers and consumers exchanging items through a Queue, and a Pipe both ways.

The Rust version is exchanging_objects/src/main.rs.
"""

import argparse
import multiprocessing
import queue as pyqueue
import sys
import time
from multiprocessing import Event, Pipe, Process, Queue, Value

from cli import bounded_int
import timeline

# How long a consumer waits in get() when a consumer was killed: Python's queue holds a
# lock while a consumer waits in get(), and a consumer killed then keeps it forever.
HANG_GUARD_SECONDS = 5

# The longest the parent waits for the consumer that takes the item to be killed.
PATIENCE_SECONDS = 10


def producer(queue, first, items, kill):
    name = multiprocessing.current_process().name
    for item in range(first, first + items):
        if kill is not None and item > kill["item"]:
            kill["done"].wait(PATIENCE_SECONDS)
        queue.put(item)
        print(f"{name} : item {item} appended to the queue", flush=True)


def consumer(queue, taken, slot, kill):
    name = multiprocessing.current_process().name
    while True:
        try:
            item = queue.get(timeout=HANG_GUARD_SECONDS if kill is not None else None)
        except pyqueue.Empty:
            sys.exit(f"Error: {name} waited {HANG_GUARD_SECONDS} s in get() for nothing: "
                     "the killed consumer took the queue's lock with it")
        if item is None:
            return
        print(f"{name} : item {item} popped from the queue", flush=True)
        with taken.get_lock():
            taken[slot] += 1
        if kill is not None and kill["item"] == item:
            kill["taker"].value = slot
            kill["taken"].set()


def squarer(numbers, squares, parents_numbers_end, parents_squares_end):
    # fork() gave this child copies of the parent's ends too: close them, or recv()
    # never sees the end of file (this end's writer would still be open, here).
    parents_numbers_end.close()
    parents_squares_end.close()
    while True:
        try:
            n = numbers.recv()
        except EOFError:
            return
        squares.send(n * n)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=bounded_int(1, 16), default=1,
                        help="how many producer processes put items on the queue")
    parser.add_argument("--consumers", type=bounded_int(1, 16), default=2,
                        help="how many consumer processes take items from it")
    parser.add_argument("--items", type=bounded_int(0, 10_000), default=5,
                        help="how many items each producer puts")
    parser.add_argument("--kill-consumer-at", type=bounded_int(0, 159_999), default=None,
                        metavar="I",
                        help="kill (SIGKILL) the consumer that takes item I, while it waits "
                             "for its next item")
    timeline.add_arguments(parser)
    args = parser.parse_args()
    timeline.begin(args)
    total = args.producers * args.items
    if args.kill_consumer_at is not None and args.kill_consumer_at >= total:
        parser.error(f"--kill-consumer-at {args.kill_consumer_at} names no item: "
                     f"the items are 0..{total}")

    queue = Queue()
    taken = multiprocessing.Array("q", args.consumers)
    kill = None
    if args.kill_consumer_at is not None:
        kill = {"item": args.kill_consumer_at, "taker": Value("q", 0), "taken": Event(),
                "done": Event()}

    producers = [Process(name=f"Producer-{p + 1}", target=producer,
                         args=(queue, p * args.items, args.items, kill))
                 for p in range(args.producers)]
    # Daemonic: they serve while the parent lives, and end with it if it ends before
    # it has put their Nones.
    consumers = [Process(name=f"Consumer-{c + 1}", target=consumer,
                         args=(queue, taken, c, kill), daemon=True)
                 for c in range(args.consumers)]
    for process in producers + consumers:
        process.start()

    if kill is not None:
        if not kill["taken"].wait(PATIENCE_SECONDS):
            sys.exit(f"Error: no consumer took item {kill['item']} within {PATIENCE_SECONDS} s")
        # It is back in get() by now, waiting: no later item is put until it dies.
        time.sleep(0.1)
        victim = consumers[kill["taker"].value]
        victim.kill()
        victim.join()
        print(f"{victim.name} was killed with SIGKILL while it waited in get()", flush=True)
        kill["done"].set()

    for process in producers:
        process.join()
    for _ in consumers:
        queue.put(None)
    failed = None
    for process in consumers:
        process.join()
        if process.exitcode not in (0, -9):
            failed = process.name
    counts = ", ".join(f"{process.name}: {taken[c]}" for c, process in enumerate(consumers))
    print(f"Queue: {total} items put, {sum(taken)} taken ({counts})", flush=True)

    numbers_in, numbers_out = Pipe(duplex=False)
    squares_in, squares_out = Pipe(duplex=False)
    child = Process(name="Squarer", target=squarer,
                    args=(numbers_in, squares_out, numbers_out, squares_in))
    child.start()
    # The child has its ends now: close the parent's copies of them.
    numbers_in.close()
    squares_out.close()
    squares = []
    for n in range(min(total, 10)):
        numbers_out.send(n)
        squares.append(squares_in.recv())
    numbers_out.close()
    try:
        squares_in.recv()
        end = "more"
    except EOFError:
        end = "end of file"
    child.join()
    print(f"Pipe: sent 0..{min(total, 10)} to the Squarer, received {squares}, then {end}",
          flush=True)
    if failed is not None:
        sys.exit(f"Error: process {failed} failed")
