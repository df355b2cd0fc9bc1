//! The policy's view of the host: configuration, clock and logs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::LogLevel;

/// What a policy can ask of its host: configuration, the current time, and logging.
///
/// Inside a component it calls the `host` imports of the WIT world. Natively it is built
/// with [`Context::for_test`], holds its configuration and clock in memory and captures logs,
/// so policy logic can be unit-tested without WebAssembly.
pub struct Context {
    backend: Backend,
}

enum Backend {
    /// The real host, through the component's imports (only inside WebAssembly).
    #[cfg(target_arch = "wasm32")]
    Host,
    /// In-memory configuration, clock and captured logs.
    Test(TestBackend),
}

struct TestBackend {
    config: BTreeMap<String, String>,
    now: i64,
    logs: RefCell<Vec<LogRecord>>,
}

/// One log record captured by a test [`Context`].
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    /// Severity of the record.
    pub level: LogLevel,
    /// The message.
    pub message: String,
    /// Structured key/value fields.
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// The value of field `key`, if the record has it.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A configuration value that could not be parsed; names the key, the value and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    value: String,
    reason: String,
}

impl ConfigError {
    /// Creates an error for `key` holding `value`, failing because of `reason`.
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// The configuration key whose value is invalid.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The invalid value, as configured.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why the value is invalid.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value {:?} for config key `{}`: {}",
            self.value, self.key, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Builds a test [`Context`]: `Context::for_test().config("k", "v").now(ts).build()`.
#[derive(Clone, Debug, Default)]
pub struct ContextBuilder {
    config: BTreeMap<String, String>,
    now: i64,
}

impl ContextBuilder {
    /// Sets configuration value `key` to `value`.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Sets several configuration values at once.
    pub fn configs<K, V>(mut self, entries: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.config
            .extend(entries.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the clock, in Unix seconds (0 unless set).
    pub fn now(mut self, unix_seconds: i64) -> Self {
        self.now = unix_seconds;
        self
    }

    /// Finishes the context.
    pub fn build(self) -> Context {
        Context {
            backend: Backend::Test(TestBackend {
                config: self.config,
                now: self.now,
                logs: RefCell::new(Vec::new()),
            }),
        }
    }
}

impl From<ContextBuilder> for Context {
    fn from(builder: ContextBuilder) -> Self {
        builder.build()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => f.write_str("Context::Host"),
            Backend::Test(t) => f
                .debug_struct("Context::Test")
                .field("config", &t.config)
                .field("now", &t.now)
                .finish(),
        }
    }
}

impl Context {
    /// Starts a test context, with no configuration and the clock at 0.
    pub fn for_test() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// The context an exported policy runs with: the host inside WebAssembly, an empty
    /// test context natively (the wit-bindgen import stubs must never run natively).
    pub(crate) fn from_environment() -> Context {
        #[cfg(target_arch = "wasm32")]
        {
            Context {
                backend: Backend::Host,
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Context::for_test().build()
        }
    }

    /// One configuration value, if it is set.
    pub fn config(&self, key: &str) -> Option<String> {
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => crate::bindings::stripe_discount::policy::host::config(key),
            Backend::Test(t) => t.config.get(key).cloned(),
        }
    }

    /// One configuration value, or `default` when it is not set.
    pub fn config_or(&self, key: &str, default: &str) -> String {
        self.config(key).unwrap_or_else(|| default.to_string())
    }

    /// One configuration value parsed as `T` (surrounding whitespace ignored).
    ///
    /// `Ok(None)` when the key is not set; a [`ConfigError`] naming the key when the value
    /// does not parse.
    pub fn config_parse<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.config(key) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|e| ConfigError::new(key, raw.as_str(), e.to_string())),
        }
    }

    /// One configuration value parsed as `T`, or `default` when it is not set.
    pub fn config_parse_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.config_parse(key)?.unwrap_or(default))
    }

    /// A percentage off (`10`, `12.5`, `7.5%`): greater than 0 and at most 100.
    ///
    /// `Ok(None)` when the key is not set; a [`ConfigError`] naming the key otherwise.
    /// Parsed without the standard float parser (see [`crate::parse_percent`]).
    pub fn config_percent(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        let Some(raw) = self.config(key) else {
            return Ok(None);
        };
        match crate::parse_percent(&raw) {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Some(p)),
            Ok(_) => Err(ConfigError::new(
                key,
                raw.as_str(),
                "must be greater than 0 and at most 100",
            )),
            Err(reason) => Err(ConfigError::new(key, raw.as_str(), reason)),
        }
    }

    /// The whole configuration, as key/value pairs.
    pub fn config_entries(&self) -> Vec<(String, String)> {
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => crate::bindings::stripe_discount::policy::host::config_entries(),
            Backend::Test(t) => t
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The current time, Unix seconds (fixed by the runner in tests).
    pub fn now(&self) -> i64 {
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => crate::bindings::stripe_discount::policy::host::now(),
            Backend::Test(t) => t.now,
        }
    }

    /// Writes a structured log record, attributed to the policy by the host.
    pub fn log(&self, level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => {
                let fields: Vec<(String, String)> = fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                crate::bindings::stripe_discount::policy::host::log(level, message, &fields);
            }
            Backend::Test(t) => t.logs.borrow_mut().push(LogRecord {
                level,
                message: message.to_string(),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
        }
    }

    /// Logs at `debug` level.
    pub fn debug(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(LogLevel::Debug, message, fields);
    }

    /// Logs at `info` level.
    pub fn info(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(LogLevel::Info, message, fields);
    }

    /// Logs at `warn` level.
    pub fn warn(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(LogLevel::Warn, message, fields);
    }

    /// Logs at `error` level.
    pub fn error(&self, message: &str, fields: &[(&str, &str)]) {
        self.log(LogLevel::Error, message, fields);
    }

    /// The records logged so far through a test context (always empty inside a component).
    pub fn logs(&self) -> Vec<LogRecord> {
        match &self.backend {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => Vec::new(),
            Backend::Test(t) => t.logs.borrow().clone(),
        }
    }

    /// Whether a test context captured a record at `level` whose message contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.logs()
            .iter()
            .any(|r| r.level == level && r.message.contains(needle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lookup_and_defaults() {
        let ctx = Context::for_test().config("a", "1").now(42).build();
        assert_eq!(ctx.config("a").as_deref(), Some("1"));
        assert_eq!(ctx.config("b"), None);
        assert_eq!(ctx.config_or("b", "x"), "x");
        assert_eq!(ctx.now(), 42);
        assert_eq!(
            ctx.config_entries(),
            vec![("a".to_string(), "1".to_string())]
        );
    }

    #[test]
    fn config_parse_reports_the_key() {
        let ctx = Context::for_test()
            .config("n", " 12 ")
            .config("bad", "twelve")
            .build();
        assert_eq!(ctx.config_parse::<i64>("n"), Ok(Some(12)));
        assert_eq!(ctx.config_parse::<i64>("missing"), Ok(None));
        assert_eq!(ctx.config_parse_or::<i64>("missing", 7), Ok(7));
        let err = ctx.config_parse::<i64>("bad").unwrap_err();
        assert_eq!(err.key(), "bad");
        assert_eq!(err.value(), "twelve");
        let ctx = Context::for_test()
            .config("p", "12.5%")
            .config("zero", "0")
            .config("big", "101")
            .config("word", "ten")
            .build();
        assert_eq!(ctx.config_percent("p"), Ok(Some(12.5)));
        assert_eq!(ctx.config_percent("unset"), Ok(None));
        for key in ["zero", "big", "word"] {
            assert_eq!(ctx.config_percent(key).unwrap_err().key(), key);
        }
        assert!(err.to_string().contains("`bad`"), "{err}");
        assert!(err.to_string().contains("\"twelve\""), "{err}");
    }

    #[test]
    fn logs_are_captured() {
        let ctx = Context::for_test().build();
        ctx.info("hello", &[("k", "v")]);
        ctx.error("boom", &[]);
        let logs = ctx.logs();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].level, LogLevel::Info);
        assert_eq!(logs[0].field("k"), Some("v"));
        assert!(ctx.logged(LogLevel::Error, "boom"));
        assert!(!ctx.logged(LogLevel::Warn, "boom"));
    }

    #[test]
    fn environment_context_is_inert_natively() {
        let ctx = Context::from_environment();
        assert_eq!(ctx.config("anything"), None);
        assert_eq!(ctx.now(), 0);
        ctx.warn("no host", &[]);
    }
}
