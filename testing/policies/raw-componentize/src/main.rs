//! `raw-componentize CORE OUT`: core module → component with wit-component, like
//! `policy-runner componentize` but without its interface checks, so the adversarial
//! tests can have components with ungranted imports or of the wrong world.

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [core, out] = args.as_slice() else {
        anyhow::bail!("usage: raw-componentize CORE.wasm OUT.wasm");
    };
    let bytes = std::fs::read(core).with_context(|| format!("reading {core}"))?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .context("reading the module's WIT metadata")?
        .encode()
        .context("encoding the component")?;
    std::fs::write(out, component).with_context(|| format!("writing {out}"))?;
    Ok(())
}
