//! plantwatch: supervises BACnet/IP devices. See the library for the layout.

use clap::Parser;

fn main() -> std::process::ExitCode {
    plantwatch::run(plantwatch::cli::Cli::parse())
}
