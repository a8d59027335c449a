//! plantwatch: supervises BACnet/IP devices. See the library for the layout.

use clap::Parser;

fn main() -> std::process::ExitCode {
    match plantwatch::cli::Cli::try_parse() {
        Ok(cli) => plantwatch::run(cli),
        Err(e) => plantwatch::usage_error(e),
    }
}
