//! Runs plugins: wasmtime's component model, in a sandbox with nothing but
//! the contract's host interface, a deadline and a memory cap per call.
//!
//! One `Engine` and `Linker` per process, one pre-instantiated component per
//! plugin, and a fresh `Store` per call, so no state leaks from one call to
//! the next. Compiled code is cached on disk (`cache`); the sandbox is in
//! `sandbox`, and each contract version's bindings are dispatched in one
//! place (`dispatch`). Must not interpret what a plugin returns beyond
//! converting it into the host's types: `plan` checks it.

pub mod cache;
mod conversions;
mod dispatch;
mod sandbox;
mod v0_1_0;
mod v0_1_1;
mod v0_2_0;
mod v0_3_0;
mod v0_4_0;
mod v0_5_0;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use provision_registry::Resolved;
use semver::Version;
use wasmtime::{
    Engine, Store, Trap,
    component::{Component, Linker},
};

use crate::{desired as d, secrets::Secrets};
use dispatch::{Bound, Provider};
use sandbox::Sandbox;

pub use cache::{CompileCache, cache_base};
pub use sandbox::LogLevel;

/// The longest a plugin may take to compile. Built-ins take ~100 ms; the
/// registry already refuses components over its size limit.
const COMPILE_LIMIT: Duration = Duration::from_secs(60);

/// How often the epoch advances; the unit of call deadlines.
const TICK: Duration = Duration::from_millis(10);

/// Per-call limits. Planning a service takes microseconds, so both are far
/// above what an honest plugin needs and far below what would hurt the host.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall time one call may run (default 2 s).
    pub deadline: Duration,
    /// Linear memory one instance may grow to (default 64 MiB).
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { deadline: Duration::from_secs(2), memory_bytes: 64 << 20 }
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache: Option<CompileCache>,
    limits: Limits,
    calls: Calls,
}

/// The watchdog's view: every call in progress and when it must be over.
/// Epoch interruption stops guest code at its deadline, and no host call a
/// plugin can make blocks; should one ever block all the same (a bug in
/// wasmtime-wasi, a WASI function this list missed), the watchdog ends the
/// process well after the deadline rather than let it hang.
#[derive(Clone, Default)]
struct Calls(Arc<std::sync::Mutex<Vec<(u64, Instant)>>>);

/// How long past its deadline a call may go before the watchdog stops the
/// process: the epoch stops guest code within a tick, so this only fires
/// for a call stuck in the host.
const WATCHDOG_GRACE: Duration = Duration::from_secs(10);

impl Calls {
    fn begin(&self, deadline: Duration) -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((id, Instant::now() + deadline + WATCHDOG_GRACE));
        id
    }

    fn end(&self, id: u64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).retain(|(i, _)| *i != id);
    }

    fn stop_the_overdue(&self) {
        let overdue = self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|(_, limit)| Instant::now() > *limit);
        if overdue {
            eprintln!(
                "a plugin call is stuck in the host past its deadline and could not be interrupted; provision stops (this is a bug: please report it)"
            );
            std::process::exit(1);
        }
    }
}

/// A loaded plugin: compiled, linked, and described by its own `info`.
pub struct Plugin {
    pub info: d::PluginInfo,
    pub contract: Version,
    pre: Provider,
    pub stats: LoadStats,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadStats {
    /// Compiling, or loading the cached compiled code.
    pub compile: Duration,
    pub cached: bool,
    /// Linking and the `info` call.
    pub instantiate: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct CallStats {
    pub instantiate: Duration,
    pub call: Duration,
    /// What the plugin logged through `host.log` during the call.
    pub logs: Vec<(LogLevel, String)>,
}

/// Who is calling, for secrets and log lines.
pub struct CallContext {
    pub project: String,
    pub service: String,
    pub secrets: Arc<Secrets>,
}

/// wasmtime's engine or linker could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime")]
pub struct StartError(#[source] Box<dyn std::error::Error + Send + Sync>);

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "is built against contract {found}, which this provision does not support (it loads {supported}); \
         rebuild the plugin against a supported contract or use a provision that supports {found}"
    )]
    UnsupportedContract { found: Version, supported: String },
    #[error("is not a valid component: {0}")]
    Invalid(String),
    #[error("ran past its {0:?} deadline and was stopped")]
    Timeout(Duration),
    #[error("asked for {asked} bytes of memory, over the cap of {cap} bytes, and was stopped")]
    MemoryCap { asked: usize, cap: usize },
    #[error("crashed: {0}")]
    Trap(String),
    #[error("called host.secret more than {} times or with a name over 128 bytes, and was stopped", sandbox::MAX_SECRET_CALLS)]
    SecretCalls,
}

impl Runtime {
    pub fn new(cache: Option<CompileCache>, limits: Limits) -> Result<Self, StartError> {
        Self::start(cache, limits).map_err(|e| StartError(e.into()))
    }

    fn start(cache: Option<CompileCache>, limits: Limits) -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;

        // The epoch ticker, which also watches the calls in progress: a
        // thread that ends when the engine is dropped.
        let weak = engine.weak();
        let calls = Calls::default();
        let watched = calls.clone();
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                watched.stop_the_overdue();
                std::thread::sleep(TICK);
            }
        })?;

        let mut linker = Linker::new(&engine);
        // WASI is linked so that components built with std instantiate; the
        // context above grants nothing through it.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        sandbox::add_frozen_clock(&mut linker)?;
        dispatch::add_to_linker(&mut linker)?;
        Ok(Runtime { engine, linker, cache, limits, calls })
    }

    /// Compile (or load from the cache), link, and ask the plugin its info.
    pub fn load(&self, resolved: &Resolved) -> Result<Plugin, PluginError> {
        let contract = resolved.contract.clone();
        if !provision_registry::contract::RELEASED.contains(&contract) {
            let supported = provision_registry::contract::RELEASED.iter().rev().map(Version::to_string).collect::<Vec<_>>();
            return Err(PluginError::UnsupportedContract { found: contract, supported: supported.join(", ") });
        }

        let started = Instant::now();
        let cached = self.cache.as_ref().and_then(|cache| cache.load(&self.engine, &resolved.sha256));
        let (component, cached) = match cached {
            Some(component) => (component, true),
            None => {
                let component = self.compile(&resolved.wasm)?;
                if let Some(cache) = &self.cache {
                    cache.store(&self.engine, &resolved.sha256, &component);
                }
                (component, false)
            }
        };
        let compile = started.elapsed();

        let started = Instant::now();
        let pre = self.linker.instantiate_pre(&component).map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let pre = Provider::new(&contract, pre).map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let info = self.call(&pre, None, |bound, store| bound.info(store))?;
        let instantiate = started.elapsed();
        Ok(Plugin { info, contract, pre, stats: LoadStats { compile, cached, instantiate } })
    }

    /// Compile on a thread of its own, waited for at most `COMPILE_LIMIT`: a
    /// component crafted to make the compiler slow fails the run instead of
    /// hanging it (the thread is abandoned; the process ends soon after).
    fn compile(&self, wasm: &[u8]) -> Result<Component, PluginError> {
        let (engine, wasm) = (self.engine.clone(), wasm.to_vec());
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("plugin-compile".into())
            .spawn(move || sender.send(Component::new(&engine, &wasm)))
            .map_err(|e| PluginError::Invalid(format!("cannot start compiling: {e}")))?;
        match receiver.recv_timeout(COMPILE_LIMIT) {
            Ok(compiled) => compiled.map_err(|e| PluginError::Invalid(format!("{e:#}"))),
            Err(_) => Err(PluginError::Invalid(format!("compiling it took over {COMPILE_LIMIT:?}; it is too complex to be a plugin"))),
        }
    }

    /// Plan one service. Returns the plan (or the plugin's own error), the
    /// plugin's log lines, and timings.
    pub fn plan(
        &self,
        plugin: &Plugin,
        request: &d::ServiceRequest,
        context: Arc<CallContext>,
    ) -> Result<(Result<d::ServicePlan, d::PlanError>, CallStats), PluginError> {
        let mut stats = CallStats::default();
        let result = self.call_timed(&plugin.pre, Some(context), &mut stats, |bound, store| bound.plan(store, request))?;
        Ok((result, stats))
    }

    fn call<R>(
        &self,
        pre: &Provider,
        context: Option<Arc<CallContext>>,
        f: impl FnOnce(&Bound, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.call_timed(pre, context, &mut CallStats::default(), f)
    }

    /// A fresh store with the limits set, one instance, one call; every way
    /// it can go wrong mapped to a `PluginError`.
    fn call_timed<R>(
        &self,
        pre: &Provider,
        context: Option<Arc<CallContext>>,
        stats: &mut CallStats,
        f: impl FnOnce(&Bound, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let started = Instant::now();
        let call = self.calls.begin(self.limits.deadline);
        let mut store = Store::new(&self.engine, Sandbox::new(&self.limits, context));
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline((self.limits.deadline.as_millis() / TICK.as_millis()).max(1) as u64 + 1);
        let result = pre.instantiate(&mut store).and_then(|bound| {
            stats.instantiate = started.elapsed();
            let started = Instant::now();
            let r = f(&bound, &mut store);
            stats.call = started.elapsed();
            r
        });
        self.calls.end(call);
        stats.logs = std::mem::take(&mut store.data_mut().logs);
        if store.data().secrets_refused {
            return Err(PluginError::SecretCalls);
        }
        result.map_err(|e| self.explain(e, store.data()))
    }

    fn explain(&self, error: wasmtime::Error, sandbox: &Sandbox) -> PluginError {
        if let Some(asked) = sandbox.memory.refused {
            return PluginError::MemoryCap { asked, cap: sandbox.memory.cap };
        }
        if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
            return PluginError::Timeout(self.limits.deadline);
        }
        let stderr = String::from_utf8_lossy(&sandbox.stderr.contents()).trim().to_string();
        let trap = error.downcast_ref::<Trap>().map(|t| t.to_string()).unwrap_or_else(|| format!("{error}"));
        if stderr.is_empty() { PluginError::Trap(trap) } else { PluginError::Trap(format!("{trap}; it printed: {stderr}")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_released_contract_has_bindings_and_a_wit_folder() {
        assert_eq!(dispatch::VERSIONS, provision_registry::contract::RELEASED, "wit/contracts.toml and runtime/dispatch.rs disagree");
        for version in dispatch::VERSIONS {
            let wit = format!("{}/../wit/v{version}/provider.wit", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&wit).unwrap_or_else(|e| panic!("{wit}: {e}"));
            assert!(text.contains(&format!("package provision:provider@{version};")), "{wit} declares {version}");
        }
    }
}
