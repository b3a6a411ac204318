//! Scopes: named sets of host events a flow may call (SPEC 5), with costs, globs, aliases and
//! inclusion of other scopes.

use std::sync::Arc;

/// One rule of a [`Scope`]; a name is resolved by the first rule, in order, that allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeRule {
    /// One event by its full name.
    Exact {
        /// The event.
        name: String,
        /// Fuel per dispatch.
        cost: u64,
    },
    /// Every event whose name starts with `prefix` (`users.*` is the prefix `users.`).
    Glob {
        /// The prefix.
        prefix: String,
        /// Fuel per dispatch.
        cost: u64,
    },
    /// `alias -> target`: the flow calls `alias`, the host runs `target`.
    Alias {
        /// The name flows call.
        alias: String,
        /// The registered event that runs.
        target: String,
        /// Fuel per dispatch.
        cost: u64,
    },
    /// Everything another scope allows, at that scope's costs.
    Include {
        /// The other scope's name.
        scope: String,
    },
}

/// A named set of allowed events, built with the `allow*`, `alias` and `include` methods and
/// added to the registry with [`Registry::add_scope`](crate::Registry::add_scope). A flow
/// compiled with [`CompileOptions::scope`](crate::CompileOptions::scope) may call only what its
/// scope allows (another registered event is E0301, `EventDenied`), and each dispatch costs the
/// rule's fuel. The first rule that allows a name decides its cost.
///
/// ```
/// use koru_jit::{Code, CompileOptions, Engine, Inputs, Registry, RunLimits, Scope};
/// let mut registry = Registry::with_std();
/// registry.event("~event users.get { id: i64 } | name []const u8", |_id: i64| "ada").unwrap();
/// registry.event("~event admin.drop {} | ok", || ()).unwrap();
/// registry.add_scope("base", Scope::new().allow("std.*"));
/// registry.add_scope(
///     "app",
///     Scope::new()
///         .include("base")
///         .allow_with_cost("users.*", 5)
///         .alias("who", "users.get", 2),
/// );
/// let engine = Engine::new(registry);
/// let app = CompileOptions::default().scope("app");
/// let flow = engine.compile("t", "~users.get(id: 1)\n~who(id: 2)", &app).unwrap();
/// assert_eq!(flow.run(&Inputs::new(), &RunLimits::default()).unwrap().fuel(), 7);
/// let Err(errors) = engine.compile("t", "~admin.drop()", &app) else { panic!() };
/// assert_eq!(errors.diagnostics[0].code, Code::E0301);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub(crate) rules: Vec<ScopeRule>,
    pub(crate) libraries: Vec<Arc<crate::host::Library>>,
}

impl Scope {
    /// A scope that allows nothing.
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

    /// The rules, in order.
    pub fn rules(&self) -> &[ScopeRule] {
        &self.rules
    }
}
