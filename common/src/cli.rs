//! Command-line parsing shared by the demos: `clap`, with errors cut to one line.

use clap::Parser;
use clap::error::ErrorKind;

/// Parses the command line into `T`, the demo's `clap` options.
///
/// `--help` and `--version` print and exit 0, as usual. Any other mistake prints one
/// line to stderr (clap's first line plus a pointer to `--help`) and exits with code 2,
/// so a class sees the problem without a screen of usage text.
pub fn parse<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
            _ => {
                let rendered = error.render().to_string();
                let first = rendered
                    .lines()
                    .next()
                    .unwrap_or("error: invalid arguments");
                eprintln!("{first} (try --help)");
                std::process::exit(2);
            }
        },
    }
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
/// fn main() -> Result<(), common::cli::Report> {
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
    fn a_report_is_one_line_with_its_causes() {
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(format!("{:?}", Report::from(error)), "outer: inner");
    }
}
