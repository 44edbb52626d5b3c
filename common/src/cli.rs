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
