//! `policy-runner componentize`: core module → component, with a report of its interface.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// The WIT interface a policy may import; anything else is refused.
pub use policy_engine::bindings::HOST_INTERFACE;
/// The function a policy must export.
pub const EVALUATE_EXPORT: &str = "evaluate";

/// Arguments of `policy-runner componentize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The core module, built for wasm32-unknown-unknown with the SDK.
    pub core: PathBuf,
    /// Where to write the component.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Keep the `name` section (function names in trap backtraces; about 15 KB).
    #[arg(long)]
    pub keep_names: bool,
}

/// Runs `policy-runner componentize`.
pub fn run(args: Args) -> Result<()> {
    let report = componentize_file(&args.core, &args.output, !args.keep_names)?;
    println!("{report}");
    Ok(())
}

/// A componentized policy: its size and its interface.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where the component was written.
    pub path: PathBuf,
    /// Size of the core module read.
    pub core_size: usize,
    /// Size of the component written.
    pub component_size: usize,
    /// What the component imports.
    pub imports: Vec<Item>,
    /// What the component exports.
    pub exports: Vec<Item>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} (core module {})",
            self.path.display(),
            human_size(self.component_size),
            human_size(self.core_size)
        )?;
        writeln!(f, "  imports: {}", list(&self.imports))?;
        write!(f, "  exports: {}", list(&self.exports))
    }
}

/// `a (instance), b (func)`, or `(none)`.
pub fn list(items: &[Item]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items
            .iter()
            .map(Item::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `18.2 KB (18634 bytes)`.
pub fn human_size(bytes: usize) -> String {
    format!("{:.1} KB ({bytes} bytes)", bytes as f64 / 1024.0)
}

/// Reads `core`, componentizes it and writes `output`; checks the component's interface.
pub fn componentize_file(core: &Path, output: &Path, strip_names: bool) -> Result<Report> {
    let bytes = std::fs::read(core)
        .with_context(|| format!("cannot read core module {}", core.display()))?;
    let component = componentize(&bytes, strip_names)
        .with_context(|| format!("cannot componentize {}", core.display()))?;
    let (imports, exports) = interface(&component)?;
    check_interface(&imports, &exports)
        .with_context(|| format!("{} is not a discount policy", core.display()))?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    std::fs::write(output, &component)
        .with_context(|| format!("cannot write component {}", output.display()))?;
    Ok(Report {
        path: output.to_path_buf(),
        core_size: bytes.len(),
        component_size: component.len(),
        imports,
        exports,
    })
}

/// Wraps a core module (with wit-bindgen's component-type sections) into a validated component.
pub fn componentize(core: &[u8], strip_names: bool) -> Result<Vec<u8>> {
    if core.starts_with(b"\0asm") && core.get(4..8) != Some(&[1, 0, 0, 0]) {
        bail!("the input is already a component, not a core module");
    }
    if !core.starts_with(b"\0asm\x01\0\0\0") {
        bail!("the input is not a WebAssembly module (bad magic number)");
    }
    let stripped;
    let core = if strip_names {
        stripped = strip_custom_sections(core)?;
        &stripped[..]
    } else {
        core
    };
    if !has_component_type(core)? {
        bail!(
            "the module has no `component-type` section: build it with discount-policy-sdk \
             (wit-bindgen) and call `export_policy!`"
        );
    }
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(core)
        .context("the module's WIT metadata is unusable")?
        .encode()
        .context("the module does not fit the discount-policy world")
}

/// One import or export of a component: its name and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The name, such as `stripe-discount:policy/host@0.1.0` or `evaluate`.
    pub name: String,
    /// `instance`, `func`, `type`, ..., or `types` for an instance holding only types.
    pub kind: &'static str,
}

impl Item {
    /// Whether importing this grants nothing: a type, or an instance of types only.
    pub fn is_type_only(&self) -> bool {
        matches!(self.kind, "type" | "types")
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.kind)
    }
}

/// The kind of a component item; `types` for an instance whose exports are all plain
/// (non-resource) types, which carries no capability.
fn item_kind(
    types: &wasmparser::types::Types,
    ty: &wasmparser::component_types::ComponentEntityType,
) -> &'static str {
    use wasmparser::component_types::{ComponentAnyTypeId, ComponentEntityType as E};
    let plain_type = |ty: &E| matches!(ty, E::Type { referenced, .. } if !matches!(referenced, ComponentAnyTypeId::Resource(_)));
    match ty {
        E::Module(_) => "module",
        E::Func(_) => "func",
        E::Value(_) => "value",
        E::Type {
            referenced: ComponentAnyTypeId::Resource(_),
            ..
        } => "resource",
        E::Type { .. } => "type",
        E::Instance(id) => {
            if types[*id].exports.values().all(|item| plain_type(&item.ty)) {
                "types"
            } else {
                "instance"
            }
        }
        E::Component(_) => "component",
    }
}

/// The top-level imports and exports of a component, read from its binary and validated.
pub fn interface(component: &[u8]) -> Result<(Vec<Item>, Vec<Item>)> {
    use wasmparser::{Parser, Payload, Validator};
    let types = Validator::new()
        .validate_all(component)
        .context("the component does not validate")?;
    let (mut import_names, mut export_names) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload.context("cannot parse the component")? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    import_names.push(
                        import
                            .context("cannot parse an import")?
                            .name
                            .name
                            .to_string(),
                    );
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    export_names.push(
                        export
                            .context("cannot parse an export")?
                            .name
                            .name
                            .to_string(),
                    );
                }
            }
            _ => {}
        }
    }
    let imports = import_names
        .into_iter()
        .map(|name| {
            let item = types
                .component_item_for_import(&name)
                .with_context(|| format!("no type for import {name}"))?;
            let kind = item_kind(&types, &item.ty);
            Ok(Item { name, kind })
        })
        .collect::<Result<Vec<_>>>()?;
    let exports = export_names
        .into_iter()
        .map(|name| {
            let item = types
                .component_item_for_export(&name)
                .with_context(|| format!("no type for export {name}"))?;
            let kind = item_kind(&types, &item.ty);
            Ok(Item { name, kind })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((imports, exports))
}

/// Refuses components that import more than the host interface (plain types aside) or
/// lack the `evaluate` function.
pub fn check_interface(imports: &[Item], exports: &[Item]) -> Result<()> {
    let foreign: Vec<String> = imports
        .iter()
        .filter(|i| i.name != HOST_INTERFACE && !i.is_type_only())
        .map(|i| i.to_string())
        .collect();
    if let Some(why) = imports
        .iter()
        .find_map(|i| policy_engine::bindings::other_contract_version(&i.name))
    {
        bail!("{why}");
    }
    if !foreign.is_empty() {
        bail!(
            "it imports {} besides {HOST_INTERFACE}; build for wasm32-unknown-unknown (no WASI) \
             and reach the outside world only through the host interface",
            foreign.join(", ")
        );
    }
    if !exports
        .iter()
        .any(|e| e.name == EVALUATE_EXPORT && e.kind == "func")
    {
        bail!(
            "it does not export the function `{EVALUATE_EXPORT}`; \
             call `discount_policy_sdk::export_policy!`"
        );
    }
    Ok(())
}

/// Reads one LEB128 u32 at `*pos`.
fn read_u32(bytes: &[u8], pos: &mut usize) -> Result<u32> {
    let mut result: u32 = 0;
    for shift in (0..35).step_by(7) {
        let Some(&byte) = bytes.get(*pos) else {
            bail!("truncated module");
        };
        *pos += 1;
        result |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(result);
        }
    }
    bail!("malformed LEB128 in module")
}

/// One section of a core module: its id, its name if custom, and its whole byte range.
type Section = (u8, Option<String>, std::ops::Range<usize>);

/// Walks the sections of a core module.
fn sections(module: &[u8]) -> Result<Vec<Section>> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < module.len() {
        let start = pos;
        let id = module[pos];
        pos += 1;
        let size = read_u32(module, &mut pos)? as usize;
        let body = pos;
        let end = body
            .checked_add(size)
            .filter(|&e| e <= module.len())
            .context("truncated module section")?;
        let name = if id == 0 {
            let mut p = body;
            let len = read_u32(module, &mut p)? as usize;
            let bytes = module
                .get(p..p + len)
                .context("truncated custom section name")?;
            Some(String::from_utf8_lossy(bytes).into_owned())
        } else {
            None
        };
        out.push((id, name, start..end));
        pos = end;
    }
    Ok(out)
}

fn has_component_type(module: &[u8]) -> Result<bool> {
    Ok(sections(module)?.iter().any(|(_, name, _)| {
        name.as_deref()
            .is_some_and(|n| n.starts_with("component-type"))
    }))
}

/// Drops the `name` and DWARF (`.debug_*`) custom sections; keeps everything else.
pub fn strip_custom_sections(module: &[u8]) -> Result<Vec<u8>> {
    let mut out = module[..8].to_vec();
    for (_, name, range) in sections(module)? {
        let drop = name
            .as_deref()
            .is_some_and(|n| n == "name" || n.starts_with(".debug_"));
        if !drop {
            out.extend_from_slice(&module[range]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_modules() {
        let err = componentize(b"hello world", true).unwrap_err();
        assert!(
            err.to_string().contains("not a WebAssembly module"),
            "{err}"
        );
        let err = componentize(b"\0asm\x0d\0\x01\0", true).unwrap_err();
        assert!(err.to_string().contains("already a component"), "{err}");
    }

    #[test]
    fn refuses_modules_without_bindings() {
        // An empty module: valid wasm, but no component-type section.
        let err = componentize(b"\0asm\x01\0\0\0", true).unwrap_err();
        assert!(err.to_string().contains("component-type"), "{err}");
    }

    #[test]
    fn strips_names_only() {
        // A module with a `name` custom section and a `keep` custom section.
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[0, 6, 4, b'n', b'a', b'm', b'e', 0]);
        m.extend_from_slice(&[0, 5, 4, b'k', b'e', b'e', b'p']);
        let s = strip_custom_sections(&m).unwrap();
        assert_eq!(&s[8..], &[0, 5, 4, b'k', b'e', b'e', b'p']);
        assert!(strip_custom_sections(b"\0asm\x01\0\0\0\0\x09").is_err());
    }

    fn item(name: &str, kind: &'static str) -> Item {
        Item {
            name: name.to_string(),
            kind,
        }
    }

    #[test]
    fn interface_rules() {
        let host = item(HOST_INTERFACE, "instance");
        let eval = item(EVALUATE_EXPORT, "func");
        assert!(check_interface(std::slice::from_ref(&host), std::slice::from_ref(&eval)).is_ok());
        let wasi = item("wasi:cli/environment@0.2.0", "instance");
        let err = check_interface(&[host.clone(), wasi], std::slice::from_ref(&eval)).unwrap_err();
        assert!(err.to_string().contains("wasi:cli"), "{err}");
        assert!(check_interface(std::slice::from_ref(&host), &[]).is_err());
        assert!(check_interface(
            std::slice::from_ref(&host),
            &[item(EVALUATE_EXPORT, "instance")]
        )
        .is_err());
        let types = item(policy_engine::bindings::TYPES_INTERFACE, "types");
        let ty = item("decision", "type");
        assert!(check_interface(&[host.clone(), types, ty], std::slice::from_ref(&eval)).is_ok());
        let res = item("wasi:io/error@0.2.0", "instance");
        assert!(check_interface(&[host, res], &[eval]).is_err());
    }
}
