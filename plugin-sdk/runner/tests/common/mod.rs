//! Shared helpers: the real `policy-runner` binary, the built policies, temp dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where `scripts/build-policies.sh` put the components.
pub fn policies() -> PathBuf {
    let dir = std::env::var_os("POLICY_DIST")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("policies")))
        .unwrap_or_else(|| workspace().join("target/policies"));
    assert!(
        dir.join("promo-code.wasm").exists(),
        "built policies missing in {}: run scripts/build-policies.sh first",
        dir.display()
    );
    dir
}

/// A built component.
pub fn component(name: &str) -> PathBuf {
    policies().join(format!("{name}.wasm"))
}

/// A reference policy's cases folder.
pub fn cases(name: &str) -> PathBuf {
    workspace().join("plugins").join(name).join("cases")
}

/// Runs the runner with these arguments.
pub fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policy-runner"))
        .args(args)
        .env_remove("STRIPE_SECRET_KEY")
        .output()
        .expect("policy-runner runs")
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    /// A fresh, empty directory.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "policy-runner-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it, as text.
    pub fn join(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A path as `&str`-friendly text.
pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A component of `scripts/build-test-policies.sh` (refused by the host, on purpose).
pub fn test_component(name: &str) -> PathBuf {
    let path = workspace().join(format!("target/test-policies/{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run scripts/build-test-policies.sh first",
        path.display()
    );
    path
}
