//! The compiled-flow cache: keyed by source text and everything that changes what it compiles
//! to, bounded in entries, in bytes of native code and in bytes of memory (each flow's program,
//! layout, run states and code, measured: [`Flow::memory_bytes`]), least recently used out
//! first. An evicted
//! flow's native code is freed when the last run holding the flow finishes.
//!
//! Each entry is a slot filled once: threads asking for a source that is being compiled wait for
//! that compile instead of compiling it again. Errors are kept too (they do not change).

use super::{CompileOptions, Flow, Tier};
use crate::diag::SourceErrors;
use crate::limits::FrontEndLimits;
use crate::types::Type;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A cache entry: the compile result, filled once by the first thread that asked.
pub(crate) type Slot = Arc<OnceLock<Result<Flow, SourceErrors>>>;

fn code_bytes(slot: &Slot) -> usize {
    slot.get()
        .and_then(|r| r.as_ref().ok())
        .map_or(0, Flow::code_bytes)
}

/// Memory an entry holds: its key (a copy of the source) and what it compiled to (or its
/// errors, with their copy of the source).
fn entry_bytes(key: &Key, slot: &Slot) -> usize {
    let held = match slot.get() {
        Some(Ok(flow)) => flow.memory_bytes(),
        Some(Err(errors)) => {
            errors.text.len()
                + errors.name.len()
                + errors
                    .diagnostics
                    .iter()
                    .map(|d| std::mem::size_of_val(d) + d.heap_bytes())
                    .sum::<usize>()
        }
        None => 0,
    };
    let mocks: usize = key
        .mocks
        .iter()
        .map(|(n, s)| n.capacity() + s.capacity())
        .sum();
    std::mem::size_of::<Key>() + key.source.capacity() + mocks + held
}

/// Bounds of the cache. `max_entries: 0` turns caching off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Sources (with their options) kept, the least recently used evicted first.
    pub max_entries: usize,
    /// Native code the cached flows may hold, in bytes. Flows compile after they are cached, so
    /// the bound is enforced at each insertion.
    pub max_code_bytes: usize,
    /// Memory the cached entries may hold, in bytes: each flow's program, layout, run states and
    /// native code ([`Flow::memory_bytes`], measured), its key and its errors. Enforced at each
    /// insertion, like `max_code_bytes`; a single flow larger than the bound is compiled, used by
    /// its caller, and evicted at the next insertion.
    pub max_bytes: usize,
}

impl CacheConfig {
    /// No cache: every `Engine::compile` parses, checks and lays out its source afresh.
    pub fn disabled() -> CacheConfig {
        CacheConfig {
            max_entries: 0,
            max_code_bytes: 0,
            max_bytes: 0,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 1024,
            max_code_bytes: 64 << 20,
            max_bytes: 256 << 20,
        }
    }
}

/// What the cache holds now, and what it did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries held.
    pub entries: usize,
    /// Native code bytes the cached flows hold.
    pub code_bytes: usize,
    /// Memory the entries hold (see [`CacheConfig::max_bytes`]).
    pub bytes: usize,
    /// [`Engine::compile`](crate::Engine::compile) calls answered from the cache (or by a
    /// compile of the same key under way on another thread).
    pub hits: u64,
    /// [`Engine::compile`](crate::Engine::compile) calls that found no entry and compiled.
    pub misses: u64,
    /// Entries evicted to keep within the bounds.
    pub evictions: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    source: String,
    scope: Option<String>,
    inputs: Vec<(String, Type)>,
    guessed_inputs: Vec<(String, Type)>,
    limits: FrontEndLimits,
    tier: Tier,
    shape: Option<String>,
    mocks: Vec<(String, String)>,
    trace: crate::host::TraceLevel,
}

impl Key {
    pub fn new(source: &str, options: &CompileOptions) -> Key {
        Key {
            source: source.to_string(),
            scope: options.scope.clone(),
            inputs: options.inputs.clone(),
            guessed_inputs: options.guessed_inputs.clone(),
            limits: options.limits.clone(),
            tier: options.tier,
            shape: options.shape.clone(),
            mocks: options.mocks.clone(),
            trace: options.trace,
        }
    }
}

pub(crate) struct Cache {
    config: CacheConfig,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, (Slot, u64)>,
    clock: u64,
    stats: CacheStats,
}

impl Cache {
    pub fn new(config: CacheConfig) -> Cache {
        Cache {
            config,
            inner: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.max_entries > 0
    }

    /// The slot for `key`, new (and empty) on a miss; evicts to stay within bounds.
    pub fn slot(&self, key: Key) -> Slot {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clock += 1;
        let clock = inner.clock;
        if let Some((slot, used)) = inner.entries.get_mut(&key) {
            *used = clock;
            let slot = slot.clone();
            inner.stats.hits += 1;
            return slot;
        }
        inner.stats.misses += 1;
        let slot = Slot::default();
        inner.entries.insert(key.clone(), (slot.clone(), clock));
        loop {
            let code: usize = inner.entries.values().map(|(s, _)| code_bytes(s)).sum();
            let bytes: usize = inner
                .entries
                .iter()
                .map(|(k, (s, _))| entry_bytes(k, s))
                .sum();
            if inner.entries.len() <= self.config.max_entries
                && code <= self.config.max_code_bytes
                && bytes <= self.config.max_bytes
            {
                break;
            }
            // Never the slot just made: the caller is about to fill it.
            let oldest = inner
                .entries
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            inner.entries.remove(&oldest);
            inner.stats.evictions += 1;
        }
        slot
    }

    /// The cached flows that checked, with their scope, most recently used first.
    pub fn flows(&self) -> Vec<(Option<String>, Flow)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut flows: Vec<(u64, Option<String>, Flow)> = inner
            .entries
            .iter()
            .filter_map(|(key, (slot, used))| match slot.get() {
                Some(Ok(flow)) => Some((*used, key.scope.clone(), flow.clone())),
                _ => None,
            })
            .collect();
        flows.sort_by_key(|(used, _, _)| std::cmp::Reverse(*used));
        flows
            .into_iter()
            .map(|(_, scope, flow)| (scope, flow))
            .collect()
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        CacheStats {
            entries: inner.entries.len(),
            code_bytes: inner.entries.values().map(|(s, _)| code_bytes(s)).sum(),
            bytes: inner
                .entries
                .iter()
                .map(|(k, (s, _))| entry_bytes(k, s))
                .sum(),
            ..inner.stats
        }
    }
}
