//! `policy-runner inspect`: what a component imports and exports, and whether the host
//! would accept it: the host's own load checks, compiled as the host compiles it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use policy_engine::{check_component_header, EngineConfig, PolicyEngine, PolicySettings};

use crate::componentize::{check_interface, human_size, interface, list};
use crate::run::{cache_dir, read_settings};

/// Arguments of `policy-runner inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component, in any language.
    pub component: PathBuf,
    /// Its settings, checked as the host checks them; their `warm_up` and `[limits]` apply
    /// [default: `<component>.toml` beside it, when there is one].
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Directory of compiled artifacts (as for `run`; `none` disables it).
    #[arg(long, env = "POLICY_RUNNER_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Runs `policy-runner inspect`; fails when the host would refuse the component.
pub fn run(args: Args) -> Result<()> {
    let path = args.component.display();
    let bytes = std::fs::read(&args.component).with_context(|| format!("cannot read {path}"))?;
    println!("{path}: {}", human_size(bytes.len()));
    check_component_header(&bytes).with_context(|| format!("the host would refuse {path}"))?;
    // A component that does not validate gets the engine's word for it, below.
    if let Ok((imports, exports)) = interface(&bytes) {
        println!("  imports: {}", list(&imports));
        println!("  exports: {}", list(&exports));
        check_interface(&imports, &exports)
            .with_context(|| format!("{path} is not a discount policy"))?;
    }
    let (settings_path, settings) = read_settings(&args.component, args.settings.as_deref())?;
    let found = settings.is_some();
    let settings = match settings {
        Some(settings) => {
            settings
                .check()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("the host would refuse {}", settings_path.display()))?;
            println!("  settings: {} (valid)", settings_path.display());
            settings
        }
        None => {
            println!(
                "  settings: none; the host also needs {} beside it",
                settings_path.display()
            );
            PolicySettings::default()
        }
    };
    let engine = PolicyEngine::new(EngineConfig {
        cache_dir: cache_dir(args.cache_dir.as_deref()),
        ..EngineConfig::default()
    })?;
    let name = args
        .component
        .file_stem()
        .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned());
    let started = Instant::now();
    let from_cache = engine
        .compile(&name, &bytes, settings)
        .with_context(|| match found {
            true => format!("the host would refuse {path}"),
            false => format!(
                "the host would refuse {path} under its default limits (no settings file; \
                 pass --settings if its [limits] raise them)"
            ),
        })?;
    println!(
        "  the host accepts it: compiled and instantiated in {} ms{}",
        started.elapsed().as_millis(),
        if from_cache {
            " (from the compile cache)"
        } else {
            ""
        }
    );
    Ok(())
}
