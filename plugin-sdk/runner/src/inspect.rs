//! `policy-runner inspect`: what a component imports and exports, and whether the host
//! would accept it (only `stripe-discount:policy/host`, no WASI).

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::componentize::{check_interface, human_size, interface, list};

/// Arguments of `policy-runner inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component, in any language.
    pub component: PathBuf,
}

/// Runs `policy-runner inspect`; fails when the component imports more than the host offers.
pub fn run(args: Args) -> Result<()> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let (imports, exports) = interface(&bytes)
        .with_context(|| format!("{} is not a component", args.component.display()))?;
    println!("{}: {}", args.component.display(), human_size(bytes.len()));
    println!("  imports: {}", list(&imports));
    println!("  exports: {}", list(&exports));
    check_interface(&imports, &exports)
        .with_context(|| format!("{} is not a discount policy", args.component.display()))
}
