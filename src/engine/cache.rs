//! The compiled-flow cache: keyed by source text and everything that changes what it compiles
//! to, bounded in entries and in bytes of native code, least recently used out first. An evicted
//! flow's native code is freed when the last run holding the flow finishes.

use super::{CompileOptions, Flow, Tier};
use crate::limits::FrontEndLimits;
use crate::types::Type;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bounds of the cache. `max_entries: 0` turns caching off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    pub max_entries: usize,
    /// Native code the cached flows may hold, in bytes. Flows compile after they are cached, so
    /// the bound is enforced at each insertion.
    pub max_code_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 1024,
            max_code_bytes: 64 << 20,
        }
    }
}

/// What the cache holds now, and what it did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub code_bytes: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    source: String,
    scope: Option<String>,
    inputs: Vec<(String, Type)>,
    limits: FrontEndLimits,
    tier: Tier,
}

impl Key {
    pub fn new(source: &str, options: &CompileOptions) -> Key {
        Key {
            source: source.to_string(),
            scope: options.scope.clone(),
            inputs: options.inputs.clone(),
            limits: options.limits.clone(),
            tier: options.tier,
        }
    }
}

pub(crate) struct Cache {
    config: CacheConfig,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, (Flow, u64)>,
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

    pub fn get(&self, key: &Key) -> Option<Flow> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clock += 1;
        let clock = inner.clock;
        match inner.entries.get_mut(key) {
            Some((flow, used)) => {
                *used = clock;
                let flow = flow.clone();
                inner.stats.hits += 1;
                Some(flow)
            }
            None => {
                inner.stats.misses += 1;
                None
            }
        }
    }

    pub fn insert(&self, key: Key, flow: Flow) {
        if self.config.max_entries == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clock += 1;
        let clock = inner.clock;
        inner.entries.insert(key, (flow, clock));
        loop {
            let code_bytes: usize = inner.entries.values().map(|(f, _)| f.code_bytes()).sum();
            if inner.entries.len() <= self.config.max_entries
                && code_bytes <= self.config.max_code_bytes
            {
                break;
            }
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            inner.entries.remove(&oldest);
            inner.stats.evictions += 1;
        }
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        CacheStats {
            entries: inner.entries.len(),
            code_bytes: inner.entries.values().map(|(f, _)| f.code_bytes()).sum(),
            ..inner.stats
        }
    }
}
