//! `policy-runner`: builds, componentizes and runs discount policy components.
//!
//! Each subcommand lives in its own module with an `Args` struct and a `run` function.

use clap::{Parser, Subcommand};

mod build;
mod componentize;

/// Builds and runs discount policy components.
#[derive(Debug, Parser)]
#[command(name = "policy-runner", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Builds a Rust policy crate into `<out>/<name>.wasm` and `<out>/<name>.toml`.
    Build(build::Args),
    /// Wraps a core wasm module built for wasm32-unknown-unknown into a component.
    Componentize(componentize::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Build(args) => build::run(args),
        Command::Componentize(args) => componentize::run(args),
    }
}
