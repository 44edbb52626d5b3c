//! Command-line parsing shared by the demos: `clap`, with errors cut to one line; and
//! how a demo meets a standard output that cannot be written.

use std::sync::atomic::{AtomicU32, Ordering};

use clap::Parser;
use clap::error::ErrorKind;

use common::process::{OUTPUT_FAILED, Process, exitcode_name};

/// The pid of the demo's main process, set by [`parse`].
static MAIN_PID: AtomicU32 = AtomicU32::new(0);

/// The exit code of a demo ended by a closed output, as a shell shows a death by
/// SIGPIPE (128 + 13).
const CLOSED_OUTPUT: i32 = 128 + libc::SIGPIPE;

/// Sets up a panic hook for the main process: a `println!` that fails because the pipe
/// is closed (`demo | head -1`) ends the demo quietly with code 141; one that fails
/// otherwise (`demo > /dev/full`) ends it with one line, `Error: cannot write to
/// standard output: ...`, and code 1. Either way `exit` runs the exit hooks, which
/// join or terminate the children: none is left behind. (SIGPIPE stays ignored, as
/// Rust sets it: a process killed by it would skip those hooks.) Children that fail to
/// write end with [`OUTPUT_FAILED`] and leave the word to the main process.
fn handle_output_failures() {
    MAIN_PID.store(std::process::id(), Ordering::Relaxed);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        match message.strip_prefix("failed printing to stdout: ") {
            Some(cause) if std::process::id() == MAIN_PID.load(Ordering::Relaxed) => {
                if cause.contains(&format!("(os error {})", libc::EPIPE)) {
                    std::process::exit(CLOSED_OUTPUT);
                }
                eprintln!("Error: cannot write to standard output: {cause}");
                std::process::exit(1);
            }
            _ => previous(info),
        }
    }));
}

/// Whether standard output is a pipe whose reader has gone.
fn output_closed() -> bool {
    let mut pollfd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `pollfd` is a valid, exclusively borrowed array of one entry.
    let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
    ready == 1 && pollfd.revents & libc::POLLERR != 0
}

/// Joins `process` and turns how it ended into a demo's verdict: `Ok` for exit code 0;
/// an error that names the process otherwise. A child that could not write because
/// the output pipe was closed ends the demo quietly, as [`parse`] promises.
///
/// # Errors
/// When the child failed, or `join` itself failed.
pub fn join(process: &Process) -> anyhow::Result<()> {
    let name = process.name();
    match process.join()? {
        0 => Ok(()),
        OUTPUT_FAILED if output_closed() => std::process::exit(CLOSED_OUTPUT),
        OUTPUT_FAILED => anyhow::bail!("process {name} could not write to standard output"),
        code => anyhow::bail!("process {name} failed (exit code {})", exitcode_name(code)),
    }
}

/// Parses the command line into `T`, the demo's `clap` options.
///
/// `--help` and `--version` print and exit 0, as usual. Any other mistake prints one
/// line to stderr (clap's first line plus a pointer to `--help`) and exits with code 2,
/// so a class sees the problem without a screen of usage text.
///
/// It also sets up how the demo meets an output it cannot write: quietly for a closed
/// pipe (`demo | head -1`), with one line for a full device (`demo > /dev/full`).
pub fn parse<T: Parser>() -> T {
    handle_output_failures();
    match T::try_parse() {
        Ok(args) => args,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
            _ => {
                eprintln!("{} (try --help)", one_line(&error.render().to_string()));
                std::process::exit(2);
            }
        },
    }
}

/// A clap error in one line: its lines up to the usage text, blank lines dropped, so
/// that the valid values and clap's "a similar argument exists" stay.
fn one_line(rendered: &str) -> String {
    let kept: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect();
    let mut line = String::new();
    for part in kept {
        if !line.is_empty() {
            line.push_str(if part.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(part);
    }
    if line.is_empty() {
        line.push_str("error: invalid arguments");
    }
    line
}

/// Reports a mistake in the options that `clap` cannot see (one option's value against
/// another's) as `parse` reports the others: one line on stderr, exit code 2.
pub fn usage_error(message: &str) -> ! {
    eprintln!("error: {message} (try --help)");
    std::process::exit(2);
}

/// The error a demo's `main` returns: any error converts into it with `?`, and it
/// prints as one line, `Error: ` and the error with its causes, with no backtrace
/// (even when `RUST_BACKTRACE` is set); the exit code is 1.
///
/// ```
/// fn main() -> Result<(), demo_kit::cli::Report> {
///     let _value: u32 = "42".parse()?;
///     Ok(())
/// }
/// ```
pub struct Report(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Report {
    fn from(error: E) -> Self {
        Report(error.into())
    }
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clap_error_keeps_its_useful_lines_in_one() {
        let rendered = "error: unexpected argument '--cont' found\n\n  tip: a similar argument \
                        exists: '--count'\n\nUsage: demo [OPTIONS]\n\nFor more information, \
                        try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "error: unexpected argument '--cont' found; tip: a similar argument exists: '--count'"
        );
        let missing = "error: the following required arguments were not provided:\n  <DEMO>\n\n\
                       Usage: compare <DEMO>\n";
        assert_eq!(
            one_line(missing),
            "error: the following required arguments were not provided: <DEMO>"
        );
    }

    #[test]
    fn a_report_is_one_line_with_its_causes() {
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(format!("{:?}", Report::from(error)), "outer: inner");
    }
}
