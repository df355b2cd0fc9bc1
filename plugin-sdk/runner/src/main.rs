//! `policy-runner`: builds, componentizes and runs discount policy components.
//!
//! Each subcommand lives in its own module with an `Args` struct and a `run` function.

use clap::{Parser, Subcommand};

mod bindgen_c;
mod build;
mod clock;
mod componentize;
mod fetch;
mod inspect;
mod new;
mod replay;
mod report;
mod run;
mod test;

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
    /// Writes the C bindings of the discount-policy world (wit-bindgen's C generator).
    BindgenC(bindgen_c::Args),
    /// Lists a component's imports and exports, and loads it as the host does; fails if the
    /// host would refuse it.
    Inspect(inspect::Args),
    /// Runs a policy on a Checkout Session fixture: decision, guard verdict, totals, logs, cost.
    Run(run::Args),
    /// Runs folders of cases (fixture, input, config, now, expected decision); for CI.
    Test(test::Args),
    /// Saves a Checkout Session from Stripe (or the emulator) as a fixture.
    Fetch(fetch::Args),
    /// Replays a decision of the host's decision log on its fetched fixture.
    Replay(replay::Args),
    /// Scaffolds a new policy project.
    New(new::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Build(args) => build::run(args),
        Command::Componentize(args) => componentize::run(args),
        Command::BindgenC(args) => bindgen_c::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Run(args) => run::run(args),
        Command::Test(args) => test::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Replay(args) => replay::run(args),
        Command::New(args) => new::run(args),
    }
}
