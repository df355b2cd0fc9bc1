//! `policy-runner build`: Rust policy crate → `<out>/<name>.wasm` + `<out>/<name>.toml`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::componentize::{componentize_file, human_size, list};

/// The target policies are built for: no WASI, only the host interface.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// The settings file expected beside a policy's `Cargo.toml`.
pub const SETTINGS_FILE: &str = "policy.toml";

/// Arguments of `policy-runner build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy crate's Cargo.toml (or its directory); repeat to build several crates of
    /// one workspace with a single cargo invocation.
    #[arg(long = "manifest-path", default_value = "Cargo.toml")]
    pub manifest_paths: Vec<PathBuf>,
    /// Where to write `<name>.wasm` and `<name>.toml` [default: <target-dir>/policies].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Do not run cargo: componentize the core modules already built.
    #[arg(long)]
    pub no_cargo: bool,
    /// Keep the `name` section (function names in trap backtraces; about 15 KB).
    #[arg(long)]
    pub keep_names: bool,
}

/// What `build` needs to know about one policy crate.
#[derive(Debug, Clone)]
struct Crate {
    /// The manifest.
    manifest: PathBuf,
    /// The package name (`cart-threshold`), used for the output files.
    package: String,
    /// The library's artifact name (`cart_threshold`), used by cargo for the `.wasm`.
    artifact: String,
}

/// Runs `policy-runner build`.
pub fn run(args: Args) -> Result<()> {
    let crates = args
        .manifest_paths
        .iter()
        .map(|p| read_crate(p))
        .collect::<Result<Vec<_>>>()?;
    let first = &crates[0].manifest;
    if !args.no_cargo {
        cargo_build(first, &crates)?;
    }
    let target_dir = target_dir(first)?;
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir.join("policies"));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    for krate in &crates {
        let core = target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", krate.artifact));
        if !core.exists() {
            bail!(
                "{} was not built: run `cargo build --release --target {WASM_TARGET} -p {}` \
                 (is its crate-type `cdylib`?)",
                core.display(),
                krate.package
            );
        }
        let wasm_out = out_dir.join(format!("{}.wasm", krate.package));
        let tmp = out_dir.join(format!(".{}.wasm.tmp", krate.package));
        let report = componentize_file(&core, &tmp, !args.keep_names)?;
        let wasm_changed = replace_if_changed(&tmp, &wasm_out)?;
        let settings_changed = copy_settings(krate, &out_dir)?;
        println!(
            "{}: {}{}",
            wasm_out.display(),
            human_size(report.component_size),
            if wasm_changed || settings_changed {
                ""
            } else {
                " (unchanged)"
            }
        );
        println!("  imports: {}", list(&report.imports));
        println!("  exports: {}", list(&report.exports));
    }
    Ok(())
}

/// Reads package and library names from a crate's Cargo.toml.
fn read_crate(path: &Path) -> Result<Crate> {
    let manifest = if path.is_dir() {
        path.join("Cargo.toml")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", manifest.display()))?;
    let package = doc
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .with_context(|| format!("{} has no [package] name", manifest.display()))?
        .to_string();
    let lib = doc.get("lib");
    let artifact = lib
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .map_or_else(|| package.replace('-', "_"), str::to_string);
    let is_cdylib = lib
        .and_then(|l| l.get("crate-type"))
        .and_then(|t| t.as_array())
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
    if !is_cdylib {
        bail!(
            "{}: a policy crate needs `[lib] crate-type = [\"cdylib\", \"rlib\"]`",
            manifest.display()
        );
    }
    Ok(Crate {
        manifest,
        package,
        artifact,
    })
}

/// `cargo build --release --target wasm32-unknown-unknown -p a -p b`, in one invocation.
fn cargo_build(manifest: &Path, crates: &[Crate]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--manifest-path",
    ])
    .arg(manifest);
    for krate in crates {
        cmd.args(["-p", &krate.package]);
    }
    let status = cmd.status().context("cannot run cargo (is it on PATH?)")?;
    if !status.success() {
        bail!(
            "cargo build failed ({status}); is the target installed? \
             `rustup target add {WASM_TARGET}`"
        );
    }
    Ok(())
}

/// `CARGO_TARGET_DIR`, else cargo metadata's `target_directory`.
fn target_dir(manifest: &Path) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed invalid JSON")?;
    meta.get("target_directory")
        .and_then(|d| d.as_str())
        .map(PathBuf::from)
        .context("cargo metadata gave no target_directory")
}

/// Validates `policy.toml` beside the manifest and copies it to `<out>/<name>.toml`.
fn copy_settings(krate: &Crate, out_dir: &Path) -> Result<bool> {
    let dir = krate.manifest.parent().unwrap_or(Path::new("."));
    let source = dir.join(SETTINGS_FILE);
    let text = std::fs::read_to_string(&source).with_context(|| {
        format!(
            "cannot read {}: every policy needs one, with its `routes` and `[config]`",
            source.display()
        )
    })?;
    let settings = policy_engine::PolicySettings::from_toml(&text)
        .with_context(|| format!("{} is not a valid policy settings file", source.display()))?;
    if settings.routes.is_empty() {
        bail!(
            "{}: `routes` is empty; the policy would never run",
            source.display()
        );
    }
    let dest = out_dir.join(format!("{}.toml", krate.package));
    let tmp = out_dir.join(format!(".{}.toml.tmp", krate.package));
    std::fs::write(&tmp, text.as_bytes())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    replace_if_changed(&tmp, &dest)
}

/// Renames `tmp` over `dest` unless `dest` already has the same bytes (then removes `tmp`).
///
/// Unchanged outputs keep their modification time, so a hot-reloading host does not reload
/// them; changed ones appear atomically, never half-written.
fn replace_if_changed(tmp: &Path, dest: &Path) -> Result<bool> {
    let new = std::fs::read(tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    if std::fs::read(dest).ok().as_deref() == Some(&new[..]) {
        std::fs::remove_file(tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
        return Ok(false);
    }
    std::fs::rename(tmp, dest)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("policy-runner-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_names_from_the_manifest() {
        let dir = temp_dir("manifest");
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"cart-threshold\"\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n",
        )
        .unwrap();
        let k = read_crate(&dir).unwrap();
        assert_eq!(k.package, "cart-threshold");
        assert_eq!(k.artifact, "cart_threshold");

        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        let err = read_crate(&dir.join("Cargo.toml")).unwrap_err();
        assert!(err.to_string().contains("cdylib"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replaces_only_when_changed() {
        let dir = temp_dir("replace");
        let (tmp, dest) = (dir.join(".a.tmp"), dir.join("a"));
        std::fs::write(&tmp, b"one").unwrap();
        assert!(replace_if_changed(&tmp, &dest).unwrap());
        std::fs::write(&tmp, b"one").unwrap();
        assert!(!replace_if_changed(&tmp, &dest).unwrap());
        assert!(!tmp.exists());
        std::fs::write(&tmp, b"two").unwrap();
        assert!(replace_if_changed(&tmp, &dest).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
