//! `policy-runner bindgen-c`: C bindings of the discount-policy world, from wit-bindgen's
//! C generator (the library behind `wit-bindgen c`, without installing the CLI).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use wit_bindgen_core::wit_parser::Resolve;

/// The world every policy implements.
pub const WORLD: &str = "discount-policy";

/// Arguments of `policy-runner bindgen-c`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The WIT directory (the repository's `wit/`).
    #[arg(long, default_value = "wit")]
    pub wit: PathBuf,
    /// Where to write `discount_policy.h`, `discount_policy.c` and
    /// `discount_policy_component_type.o`.
    #[arg(short, long)]
    pub out_dir: PathBuf,
}

/// Runs `policy-runner bindgen-c`.
pub fn run(args: Args) -> Result<()> {
    for name in generate(&args)? {
        println!("{}", args.out_dir.join(name).display());
    }
    Ok(())
}

/// Writes the bindings; returns the file names written.
pub fn generate(args: &Args) -> Result<Vec<String>> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(&args.wit)
        .with_context(|| format!("cannot read WIT from {}", args.wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(WORLD))
        .with_context(|| format!("no world `{WORLD}` in {}", args.wit.display()))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("wit-bindgen's C generator failed")?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = args.out_dir.join(name);
        // Unchanged files keep their mtime, so make-style rebuilds stay quiet.
        if std::fs::read(&path).ok().as_deref() != Some(contents) {
            std::fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        written.push(name.to_string());
    }
    Ok(written)
}
