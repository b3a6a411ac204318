//! The server's TOML configuration: address, request and cache bounds, scopes (the events and
//! subflow libraries each exposes, and its run limits) and API keys mapped to scopes.
//!
//! ```toml
//! listen = "127.0.0.1:8080"      # the default
//! max_body_bytes = 65536         # request bodies above this get 413
//! max_concurrent_runs = 4        # runs beyond this wait (default: 2 per core)...
//! queue_timeout_ms = 5000        # ...this long at most, then 503 (default 5000)
//! max_connections = 1024         # beyond this, a new connection sheds the one that has
//!                                #   waited longest for its client (or gets 503 if all are busy)
//! max_connections_per_peer = 128 # per client address; beyond this, 429 and closed at once
//! header_read_timeout_ms = 10000 # a client must send its request head within this
//! request_timeout_ms = 30000     # a request must be answered within this, else 408
//! shutdown_timeout_ms = 30000    # after SIGTERM, connections still open after this are cut
//!
//! [cache]                        # the compiled-flow cache (entries and native code bytes)
//! max_entries = 1024
//! max_code_bytes = 67108864
//! max_bytes = 268435456          # memory of cached flows (program, layout, run states, code)
//!
//! [scopes.public]
//! allow = ["add", "multiply", "std.io.*"]   # events, or globs ending in `*`
//! include = []                               # other scopes whose events this one exposes
//! libraries = ["lib/math.kz"]                # subflow libraries, relative to this file
//! fuel = 100000                              # run limits (defaults: 1,000,000 fuel,
//! max_iterations = 1000000                   #   10,000,000 iterations, 1000 ms)
//! deadline_ms = 100
//! max_output_bytes = 1048576                 # what `std.io` may print per run (default 1 MiB)
//! shape = "reply"                            # every flow's value must have the shape of this
//!                                            #   event (registered, or of a library of the scope)
//! max_trace_lines = 10000                    # the trace of a `"trace": true` request (defaults:
//! max_trace_bytes = 1048576                  #   10,000 lines, 1 MiB); past it, cut
//!
//! [[keys]]
//! name = "alice"                 # shown in logs, never the key itself
//! key_env = "KORU_KEY_ALICE"     # or `key = "..."` written in the file
//! scopes = ["public"]            # the first is the default when a request names none
//! ```

use crate::host::{Registry, Scope};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration cannot be used; the message names the file and, for TOML errors, the
/// line and column.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    max_concurrent_runs: Option<usize>,
    queue_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_peer: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    #[serde(default)]
    cache: CacheSection,
    #[serde(default)]
    scopes: BTreeMap<String, ScopeSection>,
    #[serde(default)]
    keys: Vec<KeySection>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_string()
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheSection {
    max_entries: Option<usize>,
    max_code_bytes: Option<usize>,
    max_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeSection {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    libraries: Vec<PathBuf>,
    fuel: Option<u64>,
    max_iterations: Option<u64>,
    deadline_ms: Option<u64>,
    max_output_bytes: Option<u64>,
    shape: Option<String>,
    max_trace_lines: Option<u64>,
    max_trace_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySection {
    name: Option<String>,
    key: Option<String>,
    key_env: Option<String>,
    scopes: Vec<String>,
}

/// The run limits of a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeLimits {
    /// Fuel per run (`fuel`).
    pub fuel: u64,
    /// Loop iterations per run (`max_iterations`).
    pub max_iterations: u64,
    /// Wall-clock milliseconds per run (`deadline_ms`).
    pub deadline_ms: u64,
    /// Bytes `std.io` may print in one run (`RunLimits::max_output_bytes`): the run writes what
    /// fits and stops there (`exhausted`, limit `Output`).
    pub max_output_bytes: u64,
    /// Trace lines a traced request (`"trace": true`) keeps (`RunLimits::max_trace_lines`):
    /// past it the trace is cut (`"trace_cut": true` in the answer) and the run goes on.
    pub max_trace_lines: u64,
    /// Bytes of trace lines a traced request keeps (`RunLimits::max_trace_bytes`).
    pub max_trace_bytes: u64,
}

impl ScopeLimits {
    /// The engine's limits of one run starting now: fuel, iterations, the deadline from now.
    pub fn run_limits(&self, interrupt: Option<crate::InterruptHandle>) -> crate::RunLimits {
        crate::RunLimits {
            fuel: Some(self.fuel),
            max_iterations: Some(self.max_iterations),
            deadline: Some(std::time::Instant::now() + Duration::from_millis(self.deadline_ms)),
            max_output_bytes: Some(self.max_output_bytes),
            interrupt,
            // The default bound on open obligations, always discharged (SPEC 12).
            max_handles: None,
            keep_handles_open: false,
            trace: None,
            max_trace_lines: Some(self.max_trace_lines),
            max_trace_bytes: Some(self.max_trace_bytes),
        }
    }
}

impl Default for ScopeLimits {
    fn default() -> Self {
        ScopeLimits {
            fuel: 1_000_000,
            max_iterations: 10_000_000,
            deadline_ms: 1000,
            max_output_bytes: 1 << 20,
            max_trace_lines: 10_000,
            max_trace_bytes: 1 << 20,
        }
    }
}

/// What an API key may do.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The key's name, for logs (never the key itself).
    pub name: String,
    /// The scopes the key may use; the first is the default.
    pub scopes: Vec<String>,
}

/// A checked configuration; each field is the setting of the same name in the file (see the
/// module documentation for the defaults), durations converted from milliseconds.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address to listen on.
    pub listen: String,
    /// Request bodies above this get 413.
    pub max_body_bytes: usize,
    /// Runs at once; beyond this, requests wait up to `queue_timeout`.
    pub max_concurrent_runs: usize,
    /// How long a request waits for a run slot before 503.
    pub queue_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections per client address at most (beyond: 429).
    pub max_connections_per_peer: usize,
    /// A client must send its request head within this.
    pub header_read_timeout: Duration,
    /// A request must be answered within this, else 408.
    pub request_timeout: Duration,
    /// After SIGTERM, connections still open after this are cut.
    pub shutdown_timeout: Duration,
    /// The compiled-flow cache's bounds.
    pub cache: crate::engine::CacheConfig,
    /// The scopes, by name.
    pub scopes: BTreeMap<String, ScopeConfig>,
    /// API key -> grant.
    pub keys: HashMap<String, Grant>,
}

/// One scope: its rules, libraries (read from disk) and limits.
#[derive(Clone, Debug)]
pub struct ScopeConfig {
    /// Events, or globs ending in `*`.
    pub allow: Vec<String>,
    /// Other scopes whose events this one exposes.
    pub include: Vec<String>,
    /// (file name, source) of each subflow library.
    pub libraries: Vec<(String, String)>,
    /// The run limits of the scope's requests.
    pub limits: ScopeLimits,
    /// The event whose shape the value of every flow of the scope must have (SPEC 13): a
    /// registered event or one a library of the scope implements (checked by `apply`).
    pub shape: Option<String>,
}

impl ServerConfig {
    /// Reads and checks a configuration file; library paths are relative to it.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read `{}`: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        ServerConfig::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and checks configuration text named `name`; library paths are relative to `base`.
    pub fn parse(text: &str, name: &str, base: &Path) -> Result<ServerConfig, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(":{line}:{column}")
                })
                .unwrap_or_default();
            ConfigError(format!("{name}{at}: {}", e.message()))
        })?;
        let error = |message: String| ConfigError(format!("{name}: {message}"));
        let mut scopes = BTreeMap::new();
        for (scope_name, section) in &file.scopes {
            for included in &section.include {
                if !file.scopes.contains_key(included) {
                    return Err(error(format!(
                        "scope `{scope_name}` includes `{included}`, which is not a scope of this file"
                    )));
                }
            }
            let mut libraries = Vec::new();
            for library in &section.libraries {
                let path = base.join(library);
                let source = std::fs::read_to_string(&path).map_err(|e| {
                    error(format!(
                        "scope `{scope_name}`: cannot read library `{}`: {e}",
                        path.display()
                    ))
                })?;
                libraries.push((library.display().to_string(), source));
            }
            let defaults = ScopeLimits::default();
            scopes.insert(
                scope_name.clone(),
                ScopeConfig {
                    allow: section.allow.clone(),
                    include: section.include.clone(),
                    libraries,
                    shape: section.shape.clone(),
                    limits: ScopeLimits {
                        fuel: section.fuel.unwrap_or(defaults.fuel),
                        max_iterations: section.max_iterations.unwrap_or(defaults.max_iterations),
                        deadline_ms: section.deadline_ms.unwrap_or(defaults.deadline_ms),
                        max_output_bytes: section
                            .max_output_bytes
                            .unwrap_or(defaults.max_output_bytes),
                        max_trace_lines: section
                            .max_trace_lines
                            .unwrap_or(defaults.max_trace_lines),
                        max_trace_bytes: section
                            .max_trace_bytes
                            .unwrap_or(defaults.max_trace_bytes),
                    },
                },
            );
        }
        let mut keys = HashMap::new();
        for (index, section) in file.keys.iter().enumerate() {
            let label = section
                .name
                .clone()
                .unwrap_or_else(|| format!("key #{}", index + 1));
            let key = match (&section.key, &section.key_env) {
                (Some(key), None) => key.clone(),
                (None, Some(variable)) => std::env::var(variable).map_err(|_| {
                    error(format!(
                        "{label}: the environment variable `{variable}` is not set"
                    ))
                })?,
                _ => {
                    return Err(error(format!(
                        "{label}: give exactly one of `key` and `key_env`"
                    )))
                }
            };
            if key.len() < 8 {
                return Err(error(format!(
                    "{label}: API keys must be at least 8 characters"
                )));
            }
            if section.scopes.is_empty() {
                return Err(error(format!("{label}: no scopes")));
            }
            for scope in &section.scopes {
                if !scopes.contains_key(scope) {
                    return Err(error(format!(
                        "{label}: unknown scope `{scope}` (scopes: {})",
                        scopes.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            let grant = Grant {
                name: label.clone(),
                scopes: section.scopes.clone(),
            };
            if keys.insert(key, grant).is_some() {
                return Err(error(format!("{label}: the same key is given twice")));
            }
        }
        if keys.is_empty() {
            return Err(error(
                "no `[[keys]]`: every request needs an API key".to_string(),
            ));
        }
        let defaults = crate::engine::CacheConfig::default();
        Ok(ServerConfig {
            listen: file.listen,
            max_body_bytes: file.max_body_bytes,
            max_concurrent_runs: file
                .max_concurrent_runs
                .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get())),
            queue_timeout: Duration::from_millis(file.queue_timeout_ms.unwrap_or(5_000)),
            max_connections: file.max_connections.unwrap_or(1024).max(1),
            max_connections_per_peer: file.max_connections_per_peer.unwrap_or(128).max(1),
            header_read_timeout: Duration::from_millis(
                file.header_read_timeout_ms.unwrap_or(10_000),
            ),
            request_timeout: Duration::from_millis(file.request_timeout_ms.unwrap_or(30_000)),
            shutdown_timeout: Duration::from_millis(file.shutdown_timeout_ms.unwrap_or(30_000)),
            cache: crate::engine::CacheConfig {
                max_entries: file.cache.max_entries.unwrap_or(defaults.max_entries),
                max_code_bytes: file.cache.max_code_bytes.unwrap_or(defaults.max_code_bytes),
                max_bytes: file.cache.max_bytes.unwrap_or(defaults.max_bytes),
            },
            scopes,
            keys,
        })
    }

    /// Adds the scopes to `registry` and attaches their libraries (checked now: a library that
    /// does not check against its scope is an error naming the file and position).
    pub fn apply(&self, registry: &mut Registry) -> Result<(), ConfigError> {
        for (name, scope) in &self.scopes {
            let mut rules = Scope::new();
            for pattern in &scope.allow {
                if !pattern.ends_with('*') && registry.event_index(pattern).is_none() {
                    return Err(ConfigError(format!(
                        "scope `{name}` allows `{pattern}`, which is not a registered event"
                    )));
                }
                rules = rules.allow(pattern);
            }
            for included in &scope.include {
                rules = rules.include(included);
            }
            registry.add_scope(name, rules);
        }
        for (name, scope) in &self.scopes {
            for (file, source) in &scope.libraries {
                registry
                    .attach_library(name, file, source)
                    .map_err(|e| ConfigError(format!("scope `{name}`, library `{file}`: {e}")))?;
            }
        }
        for (name, scope) in &self.scopes {
            let Some(shape) = &scope.shape else {
                continue;
            };
            let in_libraries = registry.scope_closure(name).is_ok_and(|closure| {
                closure
                    .iter()
                    .any(|s| s.libraries.iter().any(|l| l.implements(shape)))
            });
            if registry.event_index(shape).is_none() && !in_libraries {
                return Err(ConfigError(format!(
                    "scope `{name}` has shape `{shape}`, which is neither a registered event nor a subflow of the scope's libraries"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::parse(text, "test.toml", Path::new("."))
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let config = parse(
            "[scopes.public]\nallow = [\"add\"]\n[[keys]]\nkey = \"k-12345678\"\nscopes = [\"public\"]\n",
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.max_body_bytes, 65536);
        assert_eq!(
            (config.max_connections, config.max_connections_per_peer),
            (1024, 128)
        );
        assert_eq!(config.scopes["public"].limits, ScopeLimits::default());
        assert_eq!(config.keys["k-12345678"].scopes, ["public"]);
        assert_eq!(config.keys["k-12345678"].name, "key #1");
    }

    #[test]
    fn errors_name_the_file_and_position_or_the_offending_entry() {
        let e = parse("listen = \n").unwrap_err().0;
        assert!(e.starts_with("test.toml:1:"), "{e}");
        let e = parse("[scopes.a]\nfuel = -1\n").unwrap_err().0;
        assert!(e.starts_with("test.toml:2:"), "{e}");
        let e = parse("[scopes.a]\nallowed = []\n").unwrap_err().0;
        assert!(e.contains("unknown field `allowed`"), "{e}");
        let e = parse("[scopes.a]\n[[keys]]\nkey = \"k-12345678\"\nscopes = [\"b\"]\n")
            .unwrap_err()
            .0;
        assert!(e.contains("unknown scope `b`"), "{e}");
        let e = parse("[scopes.a]\n[[keys]]\nkey = \"short\"\nscopes = [\"a\"]\n")
            .unwrap_err()
            .0;
        assert!(e.contains("at least 8"), "{e}");
        let e = parse("[scopes.a]\n").unwrap_err().0;
        assert!(e.contains("no `[[keys]]`"), "{e}");
        let e = parse("[scopes.a]\ninclude = [\"z\"]\n").unwrap_err().0;
        assert!(e.contains("includes `z`"), "{e}");
        let e = parse(
            "[scopes.a]\n[[keys]]\nname = \"ops\"\nkey_env = \"KORU_TEST_SURELY_UNSET_KEY\"\nscopes = [\"a\"]\n",
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("ops: the environment variable `KORU_TEST_SURELY_UNSET_KEY` is not set"),
            "{e}"
        );
        let e = parse(
            "[scopes.a]\n[[keys]]\nkey = \"k-12345678\"\nkey_env = \"X\"\nscopes = [\"a\"]\n",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("exactly one of `key` and `key_env`"), "{e}");
    }
}
