//! `policy-runner new`: scaffolds a policy project that builds, has a passing native
//! test and runner cases, and runs in the runner at once.
//!
//! Each language is a [`Template`]: files with `{{placeholders}}`. Rust is the first;
//! another language adds a `Template` to [`TEMPLATES`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// A project template: its files and what to do next.
pub struct Template {
    /// The `--lang` value.
    pub language: &'static str,
    /// Relative path and contents, with `{{name}}`, `{{crate}}`, `{{type}}`, `{{title}}`,
    /// `{{route}}` and `{{sdk_path}}` placeholders.
    pub files: &'static [(&'static str, &'static str)],
    /// The commands to run next, with the same placeholders plus `{{dir}}`.
    pub next_steps: &'static str,
}

/// The Rust template: a crate using discount-policy-sdk.
pub const RUST: Template = Template {
    language: "rust",
    files: &[
        (
            "Cargo.toml",
            include_str!("../templates/rust/Cargo.toml.tmpl"),
        ),
        ("policy.toml", include_str!("../templates/rust/policy.toml")),
        ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
        (
            "cases/big-cart.toml",
            include_str!("../templates/rust/cases/big-cart.toml"),
        ),
        (
            "cases/small-cart.toml",
            include_str!("../templates/rust/cases/small-cart.toml"),
        ),
        (
            "cases/fixtures/session.json",
            include_str!("../templates/rust/cases/fixtures/session.json"),
        ),
        ("README.md", include_str!("../templates/rust/README.md")),
        (".gitignore", include_str!("../templates/rust/.gitignore")),
    ],
    next_steps: "cd {{dir}}
cargo test                 # native unit tests
policy-runner build        # -> <target>/policies/{{name}}.wasm
policy-runner test cases --component <target>/policies/{{name}}.wasm
policy-runner run <target>/policies/{{name}}.wasm --fixture cases/fixtures/session.json",
};

/// Files every non-Rust template shares: the WIT contract and the Rust template's cases.
macro_rules! shared_files {
    () => {
        [
            (
                "wit/discount-policy.wit",
                include_str!("../../../wit/discount-policy.wit"),
            ),
            (
                "cases/big-cart.toml",
                include_str!("../templates/rust/cases/big-cart.toml"),
            ),
            (
                "cases/small-cart.toml",
                include_str!("../templates/rust/cases/small-cart.toml"),
            ),
            (
                "cases/fixtures/session.json",
                include_str!("../templates/rust/cases/fixtures/session.json"),
            ),
        ]
    };
}

/// Next steps of the non-Rust templates.
const BUILD_NEXT_STEPS: &str = "cd {{dir}}
./build.sh                 # -> build/{{name}}.wasm + build/{{name}}.toml
policy-runner inspect build/{{name}}.wasm
policy-runner test cases --component build/{{name}}.wasm
policy-runner run build/{{name}}.wasm --fixture cases/fixtures/session.json";

/// The JavaScript template: componentize-js from npm (plugin-sdk/guides/javascript.md).
pub const JAVASCRIPT: Template = Template {
    language: "js",
    files: &{
        const SHARED: [(&str, &str); 4] = shared_files!();
        [
            SHARED[0],
            SHARED[1],
            SHARED[2],
            SHARED[3],
            ("policy.toml", include_str!("../templates/js/policy.toml")),
            (
                "src/policy.js",
                include_str!("../templates/js/src/policy.js"),
            ),
            ("build.sh", include_str!("../templates/js/build.sh")),
            ("README.md", include_str!("../templates/js/README.md")),
            (".gitignore", include_str!("../templates/js/.gitignore")),
        ]
    },
    next_steps: BUILD_NEXT_STEPS,
};

/// The Python template: componentize-py from PyPI (plugin-sdk/guides/python.md).
pub const PYTHON: Template = Template {
    language: "python",
    files: &{
        const SHARED: [(&str, &str); 4] = shared_files!();
        [
            SHARED[0],
            SHARED[1],
            SHARED[2],
            SHARED[3],
            (
                "policy.toml",
                include_str!("../templates/python/policy.toml"),
            ),
            ("src/app.py", include_str!("../templates/python/src/app.py")),
            ("build.sh", include_str!("../templates/python/build.sh")),
            ("README.md", include_str!("../templates/python/README.md")),
            (".gitignore", include_str!("../templates/python/.gitignore")),
        ]
    },
    next_steps: BUILD_NEXT_STEPS,
};

/// The C template: `policy-runner bindgen-c`, clang and wasi-libc (plugin-sdk/guides/c.md).
pub const C: Template = Template {
    language: "c",
    files: &{
        const SHARED: [(&str, &str); 4] = shared_files!();
        [
            SHARED[0],
            SHARED[1],
            SHARED[2],
            SHARED[3],
            ("policy.toml", include_str!("../templates/c/policy.toml")),
            ("src/policy.c", include_str!("../templates/c/src/policy.c")),
            ("build.sh", include_str!("../templates/c/build.sh")),
            ("README.md", include_str!("../templates/c/README.md")),
            (".gitignore", include_str!("../templates/c/.gitignore")),
        ]
    },
    next_steps: BUILD_NEXT_STEPS,
};

/// Every language `new` can scaffold.
pub const TEMPLATES: &[&Template] = &[&RUST, &JAVASCRIPT, &PYTHON, &C];

/// Arguments of `policy-runner new`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy's name: lowercase letters, digits and dashes (`welcome-offer`).
    pub name: String,
    /// Where to create it [default: `./<name>`]; must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The language.
    #[arg(long, default_value = "rust")]
    pub lang: String,
    /// The storefront route it serves [default: `/apply-<name>`].
    #[arg(long)]
    pub route: Option<String>,
    /// Path to discount-policy-sdk, for a Rust policy [default: the SDK this runner was
    /// built from].
    #[arg(long)]
    pub sdk_path: Option<PathBuf>,
}

/// Runs `policy-runner new`.
pub fn run(args: Args) -> Result<()> {
    let template = TEMPLATES
        .iter()
        .find(|t| t.language == args.lang)
        .with_context(|| {
            let known: Vec<&str> = TEMPLATES.iter().map(|t| t.language).collect();
            format!(
                "no template for {:?}; known: {}",
                args.lang,
                known.join(", ")
            )
        })?;
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    // Only the Rust template depends on the SDK crate; the others build from `wit/`.
    let sdk = match template.language {
        "rust" => Some(rust_sdk(args.sdk_path.as_deref())?),
        _ => None,
    };
    let route = args
        .route
        .clone()
        .unwrap_or_else(|| format!("/apply-{}", args.name));
    if !route.starts_with('/') {
        bail!("the route must start with '/', got {route:?}");
    }
    let vars = Vars {
        name: args.name.clone(),
        sdk_path: sdk
            .as_deref()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default(),
        route,
        dir: dir.display().to_string(),
    };
    for (path, contents) in template.files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, vars.fill(contents))
            .with_context(|| format!("cannot write {}", target.display()))?;
        #[cfg(unix)]
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", target.display()))?;
        }
    }
    // The SDK's workspace lock pins the same dependency versions the SDK is tested with.
    if let Some(lock) = sdk
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|r| r.join("Cargo.lock"))
        .filter(|lock| lock.exists())
    {
        std::fs::copy(&lock, dir.join("Cargo.lock")).ok();
    }
    let sdk_note = match &sdk {
        Some(_) => format!(", SDK {}", vars.sdk_path),
        None => String::new(),
    };
    println!(
        "created {} ({} policy {:?}, route {}{sdk_note})",
        dir.display(),
        template.language,
        args.name,
        vars.route,
    );
    println!("next:\n{}", indent(&vars.fill(template.next_steps)));
    Ok(())
}

/// The discount-policy-sdk crate a Rust policy depends on: `given`, else the SDK this
/// runner was built from.
fn rust_sdk(given: Option<&Path>) -> Result<PathBuf> {
    let sdk = match given {
        Some(p) => p.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../rust"),
    };
    let sdk = std::fs::canonicalize(&sdk).with_context(|| {
        format!(
            "the SDK is not at {}: pass --sdk-path <checkout>/plugin-sdk/rust",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").exists() {
        bail!(
            "{} has no Cargo.toml: is it discount-policy-sdk?",
            sdk.display()
        );
    }
    Ok(sdk)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lowercase ASCII letters, digits and single dashes, starting with a letter.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        bail!("{name:?} is not a valid policy name: use lowercase letters, digits and dashes, like welcome-offer");
    }
    Ok(())
}

/// The placeholder values.
struct Vars {
    name: String,
    sdk_path: String,
    route: String,
    dir: String,
}

impl Vars {
    fn fill(&self, text: &str) -> String {
        let crate_name = self.name.replace('-', "_");
        let type_name: String = self
            .name
            .split('-')
            .map(|part| {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        let title: String = {
            let words = self.name.replace('-', " ");
            let mut c = words.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
                .chars()
                .take(40)
                .collect()
        };
        text.replace("{{name}}", &self.name)
            .replace("{{crate}}", &crate_name)
            .replace("{{type}}", &type_name)
            .replace("{{title}}", &title)
            .replace("{{route}}", &self.route)
            .replace("{{sdk_path}}", &self.sdk_path)
            .replace("{{dir}}", &self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("welcome-offer").is_ok());
        assert!(check_name("a1").is_ok());
        for bad in ["", "Welcome", "1a", "a_b", "a-", "a--b", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders() {
        let v = Vars {
            name: "welcome-offer".into(),
            sdk_path: "/sdk".into(),
            route: "/apply-welcome-offer".into(),
            dir: "x".into(),
        };
        assert_eq!(
            v.fill("{{type}} {{crate}} {{title}} {{route}} {{sdk_path}}"),
            "WelcomeOffer welcome_offer Welcome offer /apply-welcome-offer /sdk"
        );
        for (_, contents) in RUST.files {
            let filled = v.fill(contents);
            assert!(!filled.contains("{{"), "{filled}");
        }
    }
}
