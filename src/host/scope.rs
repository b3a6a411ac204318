//! Scopes: named sets of host events a flow may call (SPEC 5), with costs, globs, aliases and
//! inclusion of other scopes.

use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeRule {
    /// One event by its full name.
    Exact { name: String, cost: u64 },
    /// Every event whose name starts with `prefix` (`users.*` is the prefix `users.`).
    Glob { prefix: String, cost: u64 },
    /// `alias -> target`: the flow calls `alias`, the host runs `target`.
    Alias {
        alias: String,
        target: String,
        cost: u64,
    },
    /// Everything another scope allows.
    Include { scope: String },
}

/// A named set of allowed events, built with the `allow*`, `alias` and `include` methods.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub(crate) rules: Vec<ScopeRule>,
    pub(crate) libraries: Vec<Arc<crate::host::Library>>,
}

impl Scope {
    pub fn new() -> Scope {
        Scope::default()
    }

    /// Allows one event (cost 1), or every event matching a glob such as `users.*` or `admin:*`.
    pub fn allow(self, pattern: &str) -> Scope {
        self.allow_with_cost(pattern, 1)
    }

    /// Allows one event, or a glob, at a fuel cost per dispatch.
    pub fn allow_with_cost(mut self, pattern: &str, cost: u64) -> Scope {
        let rule = match pattern.strip_suffix('*') {
            Some(prefix) => ScopeRule::Glob {
                prefix: prefix.to_string(),
                cost,
            },
            None => ScopeRule::Exact {
                name: pattern.to_string(),
                cost,
            },
        };
        self.rules.push(rule);
        self
    }

    /// Exposes `target` under the name `alias` at `cost`; `target` itself is exposed only if
    /// another rule allows it.
    pub fn alias(mut self, alias: &str, target: &str, cost: u64) -> Scope {
        self.rules.push(ScopeRule::Alias {
            alias: alias.to_string(),
            target: target.to_string(),
            cost,
        });
        self
    }

    /// Allows everything the scope named `scope` allows (resolved when a flow is checked).
    pub fn include(mut self, scope: &str) -> Scope {
        self.rules.push(ScopeRule::Include {
            scope: scope.to_string(),
        });
        self
    }

    pub fn rules(&self) -> &[ScopeRule] {
        &self.rules
    }
}
