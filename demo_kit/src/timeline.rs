//! `--timeline` and `--trace FILE`: each process's life on one time axis, drawn in the
//! terminal after the run or written for Perfetto in the Chrome Trace Event Format.
//!
//! The events come from [`common::timeline`], which records them in shared memory (the
//! demos record nothing themselves); this module turns them into a [`Timeline`], one
//! [`Track`] per process, and draws it or writes it. The Python demos write the same
//! JSON (`python/timeline.py`), and [`Timeline::from_trace`] reads either back, which is
//! how `compare DEMO -- --timeline` draws both runs on one scale.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::process::Signal;
use common::timeline::{Recording, What};
use serde_json::{Value, json};

/// The options every demo takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Options {
    /// After the run, draw each process's life on one time axis (80 columns).
    #[arg(long)]
    pub timeline: bool,
    /// After the run, write its events to FILE in the Chrome Trace Event Format (open it
    /// at ui.perfetto.dev or in chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

/// What the exit handler does, set once by [`begin`].
struct AtExit {
    options: Options,
    main_pid: u32,
}

static AT_EXIT: OnceLock<AtExit> = OnceLock::new();

/// Starts recording when `--timeline` or `--trace` is given, and arranges for the
/// drawing and the trace file when the demo's main process exits (after `common` has
/// joined or terminated the children left, so their ends are on it too). Call it
/// before the demo starts any process. A trace file that cannot be created is a
/// usage error (exit code 2), found before the run rather than after it.
pub fn begin(options: &Options) {
    if !options.timeline && options.trace.is_none() {
        return;
    }
    if let Some(path) = &options.trace
        && let Err(error) = std::fs::File::create(path)
    {
        crate::cli::usage_error(&format!("cannot write {}: {error}", path.display()));
    }
    if let Err(error) = common::timeline::record() {
        eprintln!("Error: {error}: the run goes on without a timeline");
        return;
    }
    let at_exit = AtExit {
        options: options.clone(),
        main_pid: std::process::id(),
    };
    if AT_EXIT.set(at_exit).is_ok() {
        // SAFETY: `finish` is an `extern "C" fn()` that catches every panic, as
        // `atexit` requires. Registered before any process starts, it runs after
        // `common`'s own exit handler (handlers run last-registered first).
        unsafe {
            libc::atexit(finish);
        }
    }
}

extern "C" fn finish() {
    let _ = std::panic::catch_unwind(|| {
        let Some(at_exit) = AT_EXIT.get() else {
            return;
        };
        if std::process::id() != at_exit.main_pid {
            return;
        }
        let timeline = Timeline::from_recording(&common::timeline::recorded());
        if let Some(path) = &at_exit.options.trace
            && let Err(error) = std::fs::write(path, timeline.to_trace().to_string())
        {
            eprintln!("Error: cannot write {}: {error}", path.display());
        }
        if at_exit.options.timeline {
            let drawing = timeline.draw(timeline.length, colour_wanted());
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(format!("\n{drawing}").as_bytes());
            let _ = out.flush();
        }
    });
}

/// Whether to colour the drawing: on a terminal, unless `NO_COLOR` is set (and not
/// empty), as <https://no-color.org> asks.
pub fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::io::stdout().is_terminal()
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// This signal killed it.
    Killed(i32),
    /// It had not ended when the timeline was read (the main process drawing it).
    Running,
}

impl Ending {
    fn describe(self) -> String {
        match self {
            Ending::Exited(code) => format!("exit {code}"),
            Ending::Killed(signal) => match Signal::from_number(signal) {
                Some(named) => format!("{named} -{signal}"),
                None => format!("signal -{signal}"),
            },
            Ending::Running => "running".to_string(),
        }
    }
}

/// What a stretch of a process's life was spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Waiting at a barrier, from its arrival to its departure (`passed`: the barrier
    /// let it through; otherwise it broke or the wait timed out).
    BarrierWait {
        /// Whether it passed.
        passed: bool,
    },
    /// Holding a lock.
    LockHeld,
    /// Running a pool chunk of `count` inputs from input `first`.
    Chunk {
        /// The index of its first input.
        first: u64,
        /// How many inputs.
        count: u64,
    },
}

/// A stretch of time, in microseconds since the run's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    /// What it was spent on.
    pub activity: Activity,
    /// When it began.
    pub start: f64,
    /// When it ended.
    pub end: f64,
}

/// One process's life.
#[derive(Clone, Debug, PartialEq)]
pub struct Track {
    /// Its pid.
    pub pid: u32,
    /// Its name.
    pub name: String,
    /// When it started, in µs since the run's start.
    pub start: f64,
    /// When it ended (or when the timeline was read), in µs.
    pub end: f64,
    /// How it ended.
    pub ending: Ending,
    /// What it spent its time on.
    pub spans: Vec<Span>,
    /// When a signal was sent to it, in µs, and which.
    pub signals: Vec<(f64, i32)>,
}

/// Every process of a run: the main process first, then in the order they started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// One track per process.
    pub tracks: Vec<Track>,
    /// How long the run lasted, in µs.
    pub length: f64,
    /// Events lost because the log was full.
    pub lost: u64,
}

/// The track of `pid`, made (starting at `at`) if it is new.
fn track<'a>(
    tracks: &'a mut BTreeMap<u32, Track>,
    order: &mut Vec<u32>,
    pid: u32,
    at: f64,
) -> &'a mut Track {
    tracks.entry(pid).or_insert_with(|| {
        order.push(pid);
        Track {
            pid,
            name: format!("pid {pid}"),
            start: at,
            end: f64::NAN,
            ending: Ending::Running,
            spans: Vec::new(),
            signals: Vec::new(),
        }
    })
}

/// A duration in µs, to the nanosecond (as a trace holds it).
fn micros(at: Duration) -> f64 {
    at.as_nanos() as f64 / 1e3
}

/// A time read from a trace, to the nanosecond: a start plus a duration comes back as
/// the end it was computed from.
fn nanosecond(micros: f64) -> f64 {
    (micros * 1e3).round() / 1e3
}

impl Timeline {
    /// Builds the tracks from what `common` recorded.
    pub fn from_recording(recording: &Recording) -> Timeline {
        let length = micros(recording.elapsed);
        let mut order: Vec<u32> = Vec::new();
        let mut tracks: BTreeMap<u32, Track> = BTreeMap::new();
        let mut exited: BTreeMap<u32, bool> = BTreeMap::new();
        let mut open: BTreeMap<(u32, u8), (f64, Activity)> = BTreeMap::new();
        for event in &recording.events {
            let at = micros(event.at);
            match &event.what {
                What::Running { name } => {
                    let t = track(&mut tracks, &mut order, event.pid, at);
                    t.name.clone_from(name);
                    t.start = t.start.min(at);
                }
                What::Started { child, name, .. } => {
                    let t = track(&mut tracks, &mut order, *child, at);
                    t.name.clone_from(name);
                    t.start = t.start.min(at);
                }
                What::Exiting { code } => {
                    let t = track(&mut tracks, &mut order, event.pid, at);
                    t.end = at;
                    t.ending = Ending::Exited(*code);
                    exited.insert(event.pid, true);
                }
                What::Reaped { child, code } => {
                    let had_exited = exited.contains_key(child);
                    let t = track(&mut tracks, &mut order, *child, at);
                    if *code < 0 {
                        t.ending = Ending::Killed(-*code);
                    } else if !had_exited {
                        t.ending = Ending::Exited(*code);
                    }
                    if !had_exited {
                        // A killed process cannot say when it died, and it may be
                        // reaped long after (the daemon that the exit hook terminates
                        // is reaped after the other child is joined): it died when the
                        // signal that killed it was sent, if we saw that.
                        t.end = t
                            .signals
                            .iter()
                            .rev()
                            .find(|&&(_, signal)| *code < 0 && signal == -*code)
                            .map_or(at, |&(sent, _)| sent);
                    }
                }
                What::SignalSent { child, signal } => {
                    track(&mut tracks, &mut order, *child, at)
                        .signals
                        .push((at, *signal));
                }
                What::BarrierArrived => {
                    let activity = Activity::BarrierWait { passed: false };
                    open.insert((event.pid, 0), (at, activity));
                }
                What::LockAcquired => {
                    open.insert((event.pid, 1), (at, Activity::LockHeld));
                }
                What::ChunkStarted { first, count } => {
                    let activity = Activity::Chunk {
                        first: *first,
                        count: *count,
                    };
                    open.insert((event.pid, 2), (at, activity));
                }
                What::BarrierPassed
                | What::BarrierBroke
                | What::LockReleased
                | What::ChunkEnded { .. } => {
                    let slot = match event.what {
                        What::BarrierPassed | What::BarrierBroke => 0,
                        What::LockReleased => 1,
                        _ => 2,
                    };
                    if let Some((start, mut activity)) = open.remove(&(event.pid, slot)) {
                        if let Activity::BarrierWait { passed } = &mut activity {
                            *passed = event.what == What::BarrierPassed;
                        }
                        let span = Span {
                            activity,
                            start,
                            end: at,
                        };
                        track(&mut tracks, &mut order, event.pid, start)
                            .spans
                            .push(span);
                    }
                }
                _ => {}
            }
        }
        // What was still going on when the process ended (or when the log was read).
        for ((pid, _), (start, activity)) in open {
            if let Some(t) = tracks.get_mut(&pid) {
                let end = if t.end.is_nan() { length } else { t.end };
                t.spans.push(Span {
                    activity,
                    start,
                    end,
                });
            }
        }
        let tracks = order
            .into_iter()
            .filter_map(|pid| tracks.remove(&pid))
            .map(|mut t| {
                if t.end.is_nan() {
                    t.end = length;
                }
                t.spans.sort_by(|a, b| {
                    a.start
                        .partial_cmp(&b.start)
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                t
            })
            .collect();
        Timeline {
            tracks,
            length,
            lost: recording.lost,
        }
    }

    /// The track of the process named `name`, if any.
    pub fn track(&self, name: &str) -> Option<&Track> {
        self.tracks.iter().find(|t| t.name == name)
    }

    /// The timeline as a trace in the Chrome Trace Event Format: one process (one track)
    /// per process, named and sorted as here, its life as a complete (`X`) event of
    /// category `process`, its barrier waits, lock holdings and pool chunks as `X`
    /// events inside it, and each signal sent to it as an instant (`i`) event.
    pub fn to_trace(&self) -> Value {
        let mut events = Vec::new();
        for (index, t) in self.tracks.iter().enumerate() {
            let (pid, tid) = (t.pid, t.pid);
            events.push(
                json!({"ph": "M", "name": "process_name", "pid": pid, "tid": tid,
                "args": {"name": t.name}}),
            );
            events.push(json!({"ph": "M", "name": "process_sort_index", "pid": pid,
                "tid": tid, "args": {"sort_index": index}}));
            let ending = match t.ending {
                Ending::Exited(code) => json!({"ending": "exit", "code": code}),
                Ending::Killed(signal) => json!({"ending": "signal", "signal": signal}),
                Ending::Running => json!({"ending": "running"}),
            };
            events.push(
                json!({"ph": "X", "cat": "process", "name": t.name, "pid": pid,
                "tid": tid, "ts": t.start, "dur": t.end - t.start, "args": ending}),
            );
            for span in &t.spans {
                let (cat, name, args) = match span.activity {
                    Activity::BarrierWait { passed } => (
                        "barrier",
                        "waits at the barrier".to_string(),
                        json!({"passed": passed}),
                    ),
                    Activity::LockHeld => ("lock", "holds the lock".to_string(), json!({})),
                    Activity::Chunk { first, count } => (
                        "pool",
                        format!("chunk {}", inputs(first, count)),
                        json!({"first": first, "count": count}),
                    ),
                };
                events.push(json!({"ph": "X", "cat": cat, "name": name, "pid": pid,
                    "tid": tid, "ts": span.start, "dur": span.end - span.start,
                    "args": args}));
            }
            for &(at, signal) in &t.signals {
                let name = Signal::from_number(signal)
                    .map_or_else(|| format!("signal {signal}"), |s| format!("{s} sent"));
                events.push(json!({"ph": "i", "s": "t", "cat": "signal", "name": name,
                    "pid": pid, "tid": tid, "ts": at, "args": {"signal": signal}}));
            }
        }
        json!({"displayTimeUnit": "ms", "traceEvents": events,
            "otherData": {"length_us": self.length, "lost_events": self.lost}})
    }

    /// Reads a trace written by [`Timeline::to_trace`] or by `python/timeline.py`.
    ///
    /// # Errors
    /// When the JSON is not such a trace: the message says what is missing.
    pub fn from_trace(trace: &Value) -> Result<Timeline, String> {
        let events = trace["traceEvents"]
            .as_array()
            .ok_or("no traceEvents array")?;
        let number = |event: &Value, key: &str| -> Result<f64, String> {
            event[key]
                .as_f64()
                .ok_or_else(|| format!("an event without a number {key}: {event}"))
        };
        let mut tracks: Vec<Track> = Vec::new();
        let mut sort: BTreeMap<u32, u64> = BTreeMap::new();
        let pid_of = |event: &Value| -> Result<u32, String> {
            event["pid"]
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok())
                .ok_or_else(|| format!("an event without a pid: {event}"))
        };
        for event in events {
            if event["ph"] == "M" && event["name"] == "process_sort_index" {
                sort.insert(
                    pid_of(event)?,
                    event["args"]["sort_index"].as_u64().unwrap_or(0),
                );
            }
            if event["ph"] == "X" && event["cat"] == "process" {
                let start = nanosecond(number(event, "ts")?);
                let args = &event["args"];
                let ending = match args["ending"].as_str() {
                    Some("exit") => Ending::Exited(args["code"].as_i64().unwrap_or(0) as i32),
                    Some("signal") => Ending::Killed(args["signal"].as_i64().unwrap_or(0) as i32),
                    _ => Ending::Running,
                };
                tracks.push(Track {
                    pid: pid_of(event)?,
                    name: event["name"].as_str().unwrap_or("?").to_string(),
                    start,
                    end: nanosecond(start + number(event, "dur")?),
                    ending,
                    spans: Vec::new(),
                    signals: Vec::new(),
                });
            }
        }
        for event in events {
            let pid = match event["ph"].as_str() {
                Some("X" | "i") if event["cat"] != "process" => pid_of(event)?,
                _ => continue,
            };
            let Some(track) = tracks.iter_mut().find(|t| t.pid == pid) else {
                return Err(format!("an event of pid {pid}, which has no process event"));
            };
            let args = &event["args"];
            let activity = match event["cat"].as_str() {
                Some("signal") => {
                    let signal = args["signal"].as_i64().unwrap_or(0) as i32;
                    track
                        .signals
                        .push((nanosecond(number(event, "ts")?), signal));
                    continue;
                }
                Some("barrier") => Activity::BarrierWait {
                    passed: args["passed"].as_bool().unwrap_or(false),
                },
                Some("lock") => Activity::LockHeld,
                Some("pool") => Activity::Chunk {
                    first: args["first"].as_u64().unwrap_or(0),
                    count: args["count"].as_u64().unwrap_or(0),
                },
                _ => continue,
            };
            let start = nanosecond(number(event, "ts")?);
            track.spans.push(Span {
                activity,
                start,
                end: nanosecond(start + number(event, "dur")?),
            });
        }
        if tracks.is_empty() {
            return Err("no process events (ph X, cat process)".to_string());
        }
        tracks.sort_by_key(|t| sort.get(&t.pid).copied().unwrap_or(u64::MAX));
        let other = &trace["otherData"];
        let length = other["length_us"]
            .as_f64()
            .unwrap_or_else(|| tracks.iter().map(|t| t.end).fold(0.0, f64::max));
        Ok(Timeline {
            tracks,
            length,
            lost: other["lost_events"].as_u64().unwrap_or(0),
        })
    }

    /// Draws the timeline in 80 columns, `scale` µs wide (at least the timeline's
    /// length: two timelines drawn with the same `scale` line up). Colour, when asked
    /// for, only repeats what the characters say.
    pub fn draw(&self, scale: f64, colour: bool) -> String {
        Drawing::new(scale.max(self.length).max(1.0), colour).draw(self)
    }
}

/// Inputs `first` to `first + count - 1`, as a reader says them.
fn inputs(first: u64, count: u64) -> String {
    match count {
        0 => "(none)".to_string(),
        1 => format!("{first}"),
        _ => format!("{first}-{}", first + count - 1),
    }
}

/// Columns for the process names.
const NAME: usize = 22;
/// Columns for the time axis.
const BAR: usize = 44;
/// The whole width.
const WIDTH: usize = 80;

struct Drawing {
    scale: f64,
    colour: bool,
}

/// The characters of the drawing, and what each means.
const RUNNING: char = '=';
const WAITING: char = '.';
const LOCKED: char = '#';
const SIGNALLED: char = '!';
const KILLED: char = 'X';

impl Drawing {
    fn new(scale: f64, colour: bool) -> Drawing {
        Drawing { scale, colour }
    }

    /// The column of time `at` (µs).
    fn column(&self, at: f64) -> usize {
        let column = (at.max(0.0) / self.scale * BAR as f64).floor() as usize;
        column.min(BAR - 1)
    }

    fn paint(&self, c: char) -> String {
        if !self.colour {
            return c.to_string();
        }
        let code = match c {
            WAITING => "33",
            LOCKED => "35",
            SIGNALLED | KILLED => "1;31",
            'a'..='z' => "36",
            _ => return c.to_string(),
        };
        format!("\x1b[{code}m{c}\x1b[0m")
    }

    fn draw(&self, timeline: &Timeline) -> String {
        let mut out = String::new();
        let per_column = self.scale / BAR as f64;
        let _ = writeln!(
            out,
            "Timeline: {} in all, one column is {}",
            human(timeline.length),
            human(per_column)
        );
        // The axis: 0, the middle and the end, each over a '+'.
        let mut labels = [' '; BAR];
        let mut put = |text: &str, at: usize| {
            for (i, ch) in text.chars().enumerate() {
                if let Some(cell) = labels.get_mut(at + i) {
                    *cell = ch;
                }
            }
        };
        let end_label = human(self.scale);
        let middle_label = human(self.scale / 2.0);
        put("0", 0);
        put(
            &middle_label,
            (BAR / 2).saturating_sub(middle_label.len() / 2),
        );
        put(&end_label, BAR.saturating_sub(end_label.len()));
        let _ = writeln!(out, "{:NAME$} {}", "", labels.iter().collect::<String>());
        let mut ruler = ['-'; BAR];
        ruler[0] = '+';
        ruler[BAR / 2] = '+';
        ruler[BAR - 1] = '+';
        let _ = writeln!(out, "{:NAME$} {}", "", ruler.iter().collect::<String>());

        // Each chunk gets a letter, in the order the chunks began (a map's inputs are
        // numbered from 0 again, so a later map's chunk may start at the same input).
        let mut chunks: Vec<(f64, u32)> = timeline
            .tracks
            .iter()
            .flat_map(|t| t.spans.iter().map(move |s| (s, t.pid)))
            .filter(|(s, _)| matches!(s.activity, Activity::Chunk { .. }))
            .map(|(s, pid)| (s.start, pid))
            .collect();
        chunks.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let letter = |span: &Span, pid: u32| -> char {
            let k = chunks
                .iter()
                .position(|&chunk| chunk == (span.start, pid))
                .unwrap_or(0);
            (b'a' + (k % 26) as u8) as char
        };
        let mut used = Vec::new();
        for t in &timeline.tracks {
            let mut cells = [' '; BAR];
            let (start, end) = (self.column(t.start), self.column(t.end));
            for cell in &mut cells[start..=end.max(start)] {
                *cell = RUNNING;
            }
            for span in &t.spans {
                let c = match span.activity {
                    Activity::BarrierWait { .. } => WAITING,
                    Activity::LockHeld => LOCKED,
                    Activity::Chunk { .. } => letter(span, t.pid),
                };
                let (a, b) = (self.column(span.start), self.column(span.end));
                for cell in &mut cells[a..=b.max(a)] {
                    *cell = c;
                }
            }
            for &(at, _) in &t.signals {
                cells[self.column(at)] = SIGNALLED;
            }
            if t.ending != Ending::Running {
                cells[start] = '[';
                cells[end] = if matches!(t.ending, Ending::Killed(_)) {
                    KILLED
                } else if end == start {
                    '|'
                } else {
                    ']'
                };
            } else {
                cells[start] = '[';
            }
            // The legend explains what is visible, not what was drawn over.
            used.extend(cells.iter().map(|&c| match c {
                '[' | ']' | '|' => RUNNING,
                c if c.is_ascii_lowercase() => 'a',
                c => c,
            }));
            let name = fit(&t.name, NAME);
            let bar: String = cells.iter().map(|&c| self.paint(c)).collect();
            let _ = writeln!(out, "{name:NAME$} {bar} {}", t.ending.describe());
            let ran: Vec<String> = t
                .spans
                .iter()
                .filter_map(|s| match s.activity {
                    Activity::Chunk { first, count } => {
                        Some(format!("{}={}", letter(s, t.pid), inputs(first, count)))
                    }
                    _ => None,
                })
                .collect();
            if !ran.is_empty() {
                let line = format!("ran inputs {}", ran.join(" "));
                let _ = writeln!(out, "{:NAME$} {}", "", fit(&line, WIDTH - NAME - 1));
            }
        }
        let _ = writeln!(out, "{}", legend(&used));
        if timeline.lost > 0 {
            let _ = writeln!(
                out,
                "({} events were not recorded: the log was full)",
                timeline.lost
            );
        }
        out
    }
}

/// The meaning of each character drawn, in lines of at most 80 columns.
fn legend(used: &[char]) -> String {
    let all = [
        ('=', "[=] running (| within one column)"),
        (KILLED, "X killed by a signal"),
        (SIGNALLED, "! signal sent"),
        (WAITING, ". waits at the barrier"),
        (LOCKED, "# holds a Lock"),
        ('a', "a-z pool chunks"),
    ];
    let mut lines = vec![String::new()];
    for (c, text) in all {
        if !used.contains(&c) {
            continue;
        }
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 3 + text.len() > WIDTH {
            lines.push(String::new());
        }
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() {
            line.push_str("   ");
        }
        line.push_str(text);
    }
    lines.join("\n")
}

/// `text` cut to `width` characters, the cut marked with `~`.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('~');
    cut
}

/// A duration in µs as a person reads it: `850 µs`, `12.5 ms`, `1.20 s`.
fn human(micros: f64) -> String {
    if micros < 1_000.0 {
        format!("{micros:.0} us")
    } else if micros < 100_000.0 {
        format!("{:.1} ms", micros / 1e3)
    } else if micros < 1_000_000.0 {
        format!("{:.0} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::timeline::Event;

    fn event(ms: u64, pid: u32, what: What) -> Event {
        Event {
            at: Duration::from_millis(ms),
            pid,
            what,
        }
    }

    fn run() -> Recording {
        let name = |n: &str| n.to_string();
        Recording {
            events: vec![
                event(
                    0,
                    1,
                    What::Running {
                        name: name("MainProcess"),
                    },
                ),
                event(
                    1,
                    1,
                    What::Started {
                        child: 2,
                        name: name("worker"),
                        daemon: false,
                    },
                ),
                event(
                    1,
                    2,
                    What::Running {
                        name: name("worker"),
                    },
                ),
                event(
                    2,
                    1,
                    What::Started {
                        child: 3,
                        name: name("daemon"),
                        daemon: true,
                    },
                ),
                event(10, 2, What::BarrierArrived),
                event(30, 2, What::BarrierPassed),
                event(31, 2, What::LockAcquired),
                event(32, 2, What::LockReleased),
                event(40, 2, What::ChunkStarted { first: 3, count: 2 }),
                event(50, 2, What::ChunkEnded { first: 3 }),
                event(60, 2, What::Exiting { code: 0 }),
                event(61, 1, What::Reaped { child: 2, code: 0 }),
                event(
                    70,
                    1,
                    What::SignalSent {
                        child: 3,
                        signal: 15,
                    },
                ),
                event(
                    75,
                    1,
                    What::Reaped {
                        child: 3,
                        code: -15,
                    },
                ),
            ],
            lost: 0,
            elapsed: Duration::from_millis(80),
        }
    }

    #[test]
    fn the_events_become_one_track_per_process_with_its_spans() {
        let timeline = Timeline::from_recording(&run());
        let names: Vec<&str> = timeline.tracks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["MainProcess", "worker", "daemon"]);
        let worker = timeline.track("worker").unwrap();
        assert_eq!((worker.start, worker.end), (1_000.0, 60_000.0));
        assert_eq!(worker.ending, Ending::Exited(0));
        let activities: Vec<Activity> = worker.spans.iter().map(|s| s.activity).collect();
        assert_eq!(
            activities,
            [
                Activity::BarrierWait { passed: true },
                Activity::LockHeld,
                Activity::Chunk { first: 3, count: 2 }
            ]
        );
        assert_eq!(
            (worker.spans[0].start, worker.spans[0].end),
            (10_000.0, 30_000.0)
        );
        let daemon = timeline.track("daemon").unwrap();
        assert_eq!(daemon.ending, Ending::Killed(15));
        assert_eq!(
            daemon.end, 70_000.0,
            "a killed process ends when its signal is sent"
        );
        assert_eq!(daemon.signals, [(70_000.0, 15)]);
        let main = timeline.track("MainProcess").unwrap();
        assert_eq!((main.end, main.ending), (80_000.0, Ending::Running));
    }

    #[test]
    fn a_trace_reads_back_as_the_timeline_it_was_written_from() {
        let timeline = Timeline::from_recording(&run());
        let text = timeline.to_trace().to_string();
        let back = Timeline::from_trace(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, timeline);
    }

    #[test]
    fn the_drawing_fits_80_columns_and_shows_each_life() {
        let drawing = Timeline::from_recording(&run()).draw(0.0, false);
        for line in drawing.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
        let row = |name: &str| {
            drawing
                .lines()
                .find(|line| line.starts_with(name))
                .unwrap_or_else(|| panic!("no row for {name} in\n{drawing}"))
                .to_string()
        };
        assert!(row("daemon").ends_with("SIGTERM -15"), "{drawing}");
        assert!(row("daemon").contains("=X "), "{drawing}");
        assert!(drawing.contains("X killed by a signal"), "{drawing}");
        assert!(
            !drawing.contains("! signal sent"),
            "drawn over by the X: {drawing}"
        );
        assert!(
            row("worker").contains("[====....") && row("worker").contains(".#="),
            "{drawing}"
        );
        assert!(
            row("worker").contains("=] ") && row("worker").ends_with(" exit 0"),
            "{drawing}"
        );
        assert!(drawing.contains("ran inputs a=3-4"), "{drawing}");
        assert!(!drawing.contains('\x1b'), "no colour asked for");
        assert!(
            Timeline::from_recording(&run())
                .draw(0.0, true)
                .contains('\x1b')
        );
    }
}
