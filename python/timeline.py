"""--timeline and --trace FILE for the Python demos (standard library only).

The Rust demos get both from the crate `common` (which records) and `demo_kit`'s
timeline module (which draws and writes); this module does the same for Python's
multiprocessing, so that both runs can be drawn one above the other
(`compare DEMO -- --timeline`). It records by wrapping multiprocessing's own methods
(a process's start, bootstrap, reap and signals; the Barrier's wait, the Lock, the
Pool's chunks), so the demos stay as they are: they only call add_arguments() and
begin(). Each process appends its events to one unlinked temporary file opened with
O_APPEND, which the forked children inherit.
"""

import atexit
import json
import os
import signal
import sys
import tempfile
import threading
import time

import multiprocessing
import multiprocessing.pool
import multiprocessing.popen_fork
import multiprocessing.process
import multiprocessing.synchronize
import multiprocessing.util

_log = None
_epoch = 0
_main_pid = 0
_options = None

NAME, BAR, WIDTH = 22, 44, 80
RUNNING, WAITING, LOCKED, SIGNALLED, KILLED = "=", ".", "#", "!", "X"


def add_arguments(parser):
    """The options every demo takes (as the Rust demos' demo_kit::timeline::Options)."""
    parser.add_argument("--timeline", action="store_true",
                        help="after the run, draw each process's life on one time axis")
    parser.add_argument("--trace", metavar="FILE",
                        help="after the run, write its events to FILE in the Chrome Trace "
                             "Event Format (open it in https://ui.perfetto.dev)")


def _note(kind, a=0, b=0, text=""):
    if _log is None:
        return
    line = f"{time.monotonic_ns() - _epoch} {os.getpid()} {kind} {a} {b} {text}\n"
    os.write(_log.fileno(), line.encode())


def begin(args):
    """Starts recording if --timeline or --trace was given; draws and writes at exit."""
    global _log, _epoch, _main_pid, _options
    if not args.timeline and not args.trace:
        return
    if args.trace:
        try:
            open(args.trace, "w").close()
        except OSError as error:
            print(f"error: cannot write {args.trace}: {error.strerror} (try --help)",
                  file=sys.stderr)
            sys.exit(2)
    _log = tempfile.TemporaryFile(mode="a+b", buffering=0)
    _main_pid = os.getpid()
    _options = args
    _epoch = time.monotonic_ns()
    _note("running", text=multiprocessing.current_process().name)
    _wrap()
    # Registered after multiprocessing's own exit function, so it would run before
    # it: it calls that function first (which runs once), so the children's ends
    # (the daemons terminated, the others joined) are on the timeline.
    atexit.register(_finish)


def _wrap():
    process = multiprocessing.process.BaseProcess
    start, bootstrap = process.start, process._bootstrap

    def traced_start(self):
        start(self)
        _note("started", self.pid, int(self.daemon), self.name)

    def traced_bootstrap(self, *args, **kwargs):
        _note("running", text=self.name)
        code = bootstrap(self, *args, **kwargs)
        _note("exiting", code)
        return code

    process.start, process._bootstrap = traced_start, traced_bootstrap

    popen = multiprocessing.popen_fork.Popen
    poll, send_signal = popen.poll, popen._send_signal

    def traced_poll(self, *args, **kwargs):
        before = self.returncode
        code = poll(self, *args, **kwargs)
        if before is None and code is not None:
            _note("reaped", self.pid, code)
        return code

    def traced_send_signal(self, sig):
        if self.returncode is None:
            _note("signal", self.pid, int(sig))
        send_signal(self, sig)

    popen.poll, popen._send_signal = traced_poll, traced_send_signal

    barrier = multiprocessing.synchronize.Barrier

    def traced_wait(self, timeout=None):
        _note("barrier_arrived")
        try:
            index = threading.Barrier.wait(self, timeout)
        except threading.BrokenBarrierError:
            _note("barrier_broke")
            raise
        _note("barrier_passed")
        return index

    barrier.wait = traced_wait
    multiprocessing.synchronize.Lock = _TracedLock
    multiprocessing.pool.mapstar = _traced_mapstar


class _TracedLock(multiprocessing.synchronize.Lock):
    """multiprocessing's Lock, noting when it is taken and released."""

    def _make_methods(self):
        super()._make_methods()
        acquire, release = self.acquire, self.release

        def traced_acquire(*args, **kwargs):
            taken = acquire(*args, **kwargs)
            if taken:
                _note("lock_acquired")
            return taken

        def traced_release():
            release()
            _note("lock_released")

        self.acquire, self.release = traced_acquire, traced_release

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()


def _traced_mapstar(args):
    """Pool's mapstar, noting the chunk. Python's task does not carry the index of the
    chunk's first input, so the first input itself stands for it (the demo's inputs
    are 0..N, so they are the same)."""
    function, chunk = args
    first = chunk[0] if chunk and isinstance(chunk[0], int) else 0
    _note("chunk_started", first, len(chunk))
    try:
        return list(map(function, chunk))
    finally:
        _note("chunk_ended", first)


def _finish():
    if os.getpid() != _main_pid:
        return
    multiprocessing.util._exit_function()
    timeline = _from_log()
    if _options.trace:
        with open(_options.trace, "w") as out:
            json.dump(to_trace(timeline), out)
    if _options.timeline:
        colour = (not os.environ.get("NO_COLOR")) and sys.stdout.isatty()
        sys.stdout.write("\n" + draw(timeline, timeline["length"], colour))
        sys.stdout.flush()


def _from_log():
    """What the processes recorded, as a timeline."""
    os.lseek(_log.fileno(), 0, os.SEEK_SET)
    text = _log.read().decode(errors="replace")
    return from_lines(text, (time.monotonic_ns() - _epoch) / 1e3)


def from_lines(text, length):
    """Recorded events (lines of `ns pid kind a b text`) as tracks, as
    Timeline::from_recording builds them; `length` is the run's, in µs."""
    events = []
    for line in text.splitlines():
        parts = line.split(" ", 5)
        if len(parts) == 6:
            events.append((int(parts[0]) / 1e3, int(parts[1]), parts[2], int(parts[3]),
                           int(parts[4]), parts[5]))
    events.sort(key=lambda event: event[0])
    tracks, exited, opened = {}, set(), {}

    def track(pid, at):
        if pid not in tracks:
            tracks[pid] = {"pid": pid, "name": f"pid {pid}", "start": at, "end": None,
                           "ending": ("running",), "spans": [], "signals": []}
        return tracks[pid]

    for at, pid, kind, a, b, text in events:
        if kind in ("running", "started"):
            t = track(a if kind == "started" else pid, at)
            t["name"] = text
            t["start"] = min(t["start"], at)
        elif kind == "exiting":
            t = track(pid, at)
            t["end"], t["ending"] = at, ("exit", a)
            exited.add(pid)
        elif kind == "reaped":
            t = track(a, at)
            if b < 0:
                t["ending"] = ("signal", -b)
            elif a not in exited:
                t["ending"] = ("exit", b)
            if a not in exited:
                # Killed: it died when the signal was sent (if we saw it), not when it
                # was reaped, which may be much later (as Timeline::from_recording).
                sent = [s_at for s_at, sig in t["signals"] if b < 0 and sig == -b]
                t["end"] = sent[-1] if sent else at
        elif kind == "signal":
            track(a, at)["signals"].append((at, b))
        elif kind == "barrier_arrived":
            opened[(pid, "barrier")] = (at, ("barrier", False))
        elif kind in ("barrier_passed", "barrier_broke"):
            if (pid, "barrier") in opened:
                start, _ = opened.pop((pid, "barrier"))
                track(pid, start)["spans"].append(
                    (("barrier", kind == "barrier_passed"), start, at))
        elif kind == "lock_acquired":
            opened[(pid, "lock")] = (at, ("lock",))
        elif kind == "chunk_started":
            opened[(pid, "chunk")] = (at, ("chunk", a, b))
        elif kind in ("lock_released", "chunk_ended"):
            key = (pid, "lock" if kind == "lock_released" else "chunk")
            if key in opened:
                start, activity = opened.pop(key)
                track(pid, start)["spans"].append((activity, start, at))
    for (pid, _), (start, activity) in opened.items():
        if pid in tracks:
            end = tracks[pid]["end"]
            tracks[pid]["spans"].append((activity, start, length if end is None else end))
    for t in tracks.values():
        if t["end"] is None:
            t["end"] = length
        t["spans"].sort(key=lambda span: span[1])
    return {"tracks": list(tracks.values()), "length": length, "lost": 0}


def _inputs(first, count):
    if count == 0:
        return "(none)"
    return f"{first}" if count == 1 else f"{first}-{first + count - 1}"


def to_trace(timeline):
    """The timeline in the Chrome Trace Event Format, as Timeline::to_trace writes it."""
    events = []
    for index, t in enumerate(timeline["tracks"]):
        pid = t["pid"]
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": pid,
                       "args": {"name": t["name"]}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": pid,
                       "args": {"sort_index": index}})
        ending = t["ending"]
        if ending[0] == "exit":
            args = {"ending": "exit", "code": ending[1]}
        elif ending[0] == "signal":
            args = {"ending": "signal", "signal": ending[1]}
        else:
            args = {"ending": "running"}
        events.append({"ph": "X", "cat": "process", "name": t["name"], "pid": pid,
                       "tid": pid, "ts": t["start"], "dur": t["end"] - t["start"],
                       "args": args})
        for activity, start, end in t["spans"]:
            if activity[0] == "barrier":
                cat, name, args = "barrier", "waits at the barrier", {"passed": activity[1]}
            elif activity[0] == "lock":
                cat, name, args = "lock", "holds the lock", {}
            else:
                cat, name = "pool", f"chunk {_inputs(activity[1], activity[2])}"
                args = {"first": activity[1], "count": activity[2]}
            events.append({"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": pid,
                           "ts": start, "dur": end - start, "args": args})
        for at, sig in t["signals"]:
            events.append({"ph": "i", "s": "t", "cat": "signal",
                           "name": f"{_signal_name(sig)} sent", "pid": pid, "tid": pid,
                           "ts": at, "args": {"signal": sig}})
    return {"displayTimeUnit": "ms", "traceEvents": events,
            "otherData": {"length_us": timeline["length"], "lost_events": timeline["lost"]}}


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _human(micros):
    if micros < 1_000:
        return f"{micros:.0f} us"
    if micros < 100_000:
        return f"{micros / 1e3:.1f} ms"
    if micros < 1_000_000:
        return f"{micros / 1e3:.0f} ms"
    return f"{micros / 1e6:.2f} s"


def _fit(text, width):
    return text if len(text) <= width else text[:width - 1] + "~"


def draw(timeline, scale, colour):
    """The timeline in 80 columns, as Timeline::draw draws it."""
    scale = max(scale, timeline["length"], 1.0)

    def column(at):
        return min(int(max(at, 0.0) / scale * BAR), BAR - 1)

    def paint(c):
        codes = {WAITING: "33", LOCKED: "35", SIGNALLED: "1;31", KILLED: "1;31"}
        code = codes.get(c, "36" if c.islower() else None)
        return f"\x1b[{code}m{c}\x1b[0m" if colour and code else c

    lines = [f"Timeline: {_human(timeline['length'])} in all, "
             f"one column is {_human(scale / BAR)}"]
    labels = [" "] * BAR

    def put(text, at):
        for i, ch in enumerate(text):
            if at + i < BAR:
                labels[at + i] = ch

    middle, end = _human(scale / 2), _human(scale)
    put("0", 0)
    put(middle, max(BAR // 2 - len(middle) // 2, 0))
    put(end, max(BAR - len(end), 0))
    lines.append(" " * NAME + " " + "".join(labels))
    ruler = ["-"] * BAR
    ruler[0] = ruler[BAR // 2] = ruler[BAR - 1] = "+"
    lines.append(" " * NAME + " " + "".join(ruler))
    # Each chunk gets a letter, in the order the chunks began (as Timeline::draw).
    chunks = sorted((start, t["pid"]) for t in timeline["tracks"]
                    for activity, start, _ in t["spans"] if activity[0] == "chunk")

    def letter(start, pid):
        return chr(ord("a") + chunks.index((start, pid)) % 26)

    used = set()
    for t in timeline["tracks"]:
        cells = [" "] * BAR
        start, stop = column(t["start"]), column(t["end"])
        for i in range(start, max(stop, start) + 1):
            cells[i] = RUNNING
        for activity, a, b in t["spans"]:
            c = {"barrier": WAITING, "lock": LOCKED}.get(activity[0])
            if c is None:
                c = letter(a, t["pid"])
            for i in range(column(a), max(column(b), column(a)) + 1):
                cells[i] = c
        for at, _ in t["signals"]:
            cells[column(at)] = SIGNALLED
        cells[start] = "["
        ending = t["ending"]
        if ending[0] == "signal":
            cells[stop] = KILLED
            described = f"{_signal_name(ending[1])} -{ending[1]}"
        elif ending[0] == "exit":
            cells[stop] = "|" if stop == start else "]"
            described = f"exit {ending[1]}"
        else:
            described = "running"
        # The legend explains what is visible, not what was drawn over.
        used.update(RUNNING if c in "[]|" else "a" if c.islower() else c for c in cells)
        lines.append(f"{_fit(t['name'], NAME):<{NAME}} {''.join(paint(c) for c in cells)} "
                     f"{described}")
        ran = [f"{letter(start, t['pid'])}={_inputs(activity[1], activity[2])}"
               for activity, start, _ in t["spans"] if activity[0] == "chunk"]
        if ran:
            lines.append(" " * NAME + " " + _fit("ran inputs " + " ".join(ran),
                                                 WIDTH - NAME - 1))
    legend = [("=", "[=] running (| within one column)"), (KILLED, "X killed by a signal"),
              (SIGNALLED, "! signal sent"), (WAITING, ". waits at the barrier"),
              (LOCKED, "# holds a Lock"), ("a", "a-z pool chunks")]
    line = ""
    for c, text in legend:
        if c not in used:
            continue
        if line and len(line) + 3 + len(text) > WIDTH:
            lines.append(line)
            line = ""
        line = f"{line}   {text}" if line else text
    lines.append(line)
    return "\n".join(lines) + "\n"
