//! Runs plugins: wasmtime's component model, in a sandbox with nothing but
//! the contract's host interface, a deadline and a memory cap per call.
//!
//! One `Engine` and `Linker` per process, one pre-instantiated component per
//! plugin, and a fresh `Store` per call, so no state leaks from one call to
//! the next. Compiled code is cached on disk (see `cache`).

mod cache;
mod v0_1_0;
mod v0_1_1;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use provision_registry::Resolved;
use semver::Version;
use wasmtime::{Engine, Store, Trap, component::Linker};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView, p2::pipe::MemoryOutputPipe};

use crate::{desired as d, secrets::Secrets};

pub use cache::{CompileCache, cache_base};

/// Contract versions this host can load, newest first.
pub const SUPPORTED_CONTRACTS: &[Version] = &[v0_1_1::VERSION, v0_1_0::VERSION];

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
}

/// A loaded plugin: compiled, linked, and described by its own `info`.
pub struct Plugin {
    pub info: d::PluginInfo,
    pub contract: Version,
    pre: Provider,
    pub stats: LoadStats,
}

/// One variant per supported contract version.
enum Provider {
    V0_1_0(v0_1_0::PluginPre<Sandbox>),
    V0_1_1(v0_1_1::PluginPre<Sandbox>),
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
}

/// The store data of one call: an empty WASI context (no files, sockets,
/// environment or arguments; frozen clocks; fixed-seed random) and the
/// contract's host state.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    stderr: MemoryOutputPipe,
    context: Option<Arc<CallContext>>,
    logs: Vec<(LogLevel, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Sandbox {
    fn new(limits: &Limits, context: Option<Arc<CallContext>>) -> Self {
        // A panicking guest writes its message here; keep a little of it.
        let stderr = MemoryOutputPipe::new(4096);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a, 0x17, 0xc3, 0x88]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x3c, 0x91, 0x4e, 0x06]))
            .insecure_random_seed(0)
            .build();
        Sandbox {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap { cap: limits.memory_bytes, refused: None },
            stderr,
            context,
            logs: Vec::new(),
        }
    }

    fn log(&mut self, level: LogLevel, message: String) {
        // Bounded: a chatty plugin must not grow the host without limit.
        if self.logs.len() < 1000 {
            self.logs.push((level, message.chars().take(2000).collect()));
        }
    }

    fn secret(&mut self, name: &str) -> String {
        match &self.context {
            Some(ctx) => ctx.secrets.derive(&ctx.project, &ctx.service, name),
            // `info` has no service to derive a secret for.
            None => String::new(),
        }
    }
}

/// Clocks for a pure function: always zero.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Refuses memory growth past the cap and remembers that it did, so the
/// trap that follows is reported as what it is.
struct MemoryCap {
    cap: usize,
    refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl Runtime {
    pub fn new(cache: Option<CompileCache>, limits: Limits) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;

        // The epoch ticker: a thread that ends when the engine is dropped.
        let weak = engine.weak();
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })?;

        let mut linker = Linker::new(&engine);
        // WASI is linked so that components built with std instantiate; the
        // context above grants nothing through it.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        v0_1_0::add_to_linker(&mut linker)?;
        v0_1_1::add_to_linker(&mut linker)?;
        Ok(Runtime { engine, linker, cache, limits })
    }

    /// Compile (or load from the cache), link, and ask the plugin its info.
    pub fn load(&self, resolved: &Resolved) -> Result<Plugin, PluginError> {
        let contract = resolved.contract.clone();
        // Each version has its own bindings, so a plugin is bound by exactly
        // the version it was built against (semver-compatible names would
        // otherwise link a 0.1.0 plugin to 0.1.1's differently shaped types).
        if !SUPPORTED_CONTRACTS.contains(&contract) {
            let supported = SUPPORTED_CONTRACTS.iter().map(Version::to_string).collect::<Vec<_>>();
            return Err(PluginError::UnsupportedContract { found: contract, supported: supported.join(", ") });
        }

        let started = Instant::now();
        let (component, cached) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &resolved.sha256, &resolved.wasm),
            None => wasmtime::component::Component::new(&self.engine, &resolved.wasm).map(|c| (c, false)),
        }
        .map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let compile = started.elapsed();

        let started = Instant::now();
        let pre = self.linker.instantiate_pre(&component).map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let invalid = |e: wasmtime::Error| PluginError::Invalid(format!("{e:#}"));
        let pre = if contract == v0_1_0::VERSION {
            Provider::V0_1_0(v0_1_0::PluginPre::new(pre).map_err(invalid)?)
        } else {
            Provider::V0_1_1(v0_1_1::PluginPre::new(pre).map_err(invalid)?)
        };
        let info = self.call(&pre, None, |provider, store| match provider {
            Bound::V0_1_0(p) => v0_1_0::info(p, store),
            Bound::V0_1_1(p) => v0_1_1::info(p, store),
        })?;
        let instantiate = started.elapsed();
        Ok(Plugin { info, contract, pre, stats: LoadStats { compile, cached, instantiate } })
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
        let result = self.call_timed(&plugin.pre, Some(context), &mut stats, |provider, store| match provider {
            Bound::V0_1_0(p) => v0_1_0::plan(p, store, request),
            Bound::V0_1_1(p) => v0_1_1::plan(p, store, request),
        })?;
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
        let mut store = Store::new(&self.engine, Sandbox::new(&self.limits, context));
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline((self.limits.deadline.as_millis() / TICK.as_millis()).max(1) as u64 + 1);
        let result = match pre {
            Provider::V0_1_0(pre) => pre.instantiate(&mut store).map(Bound::V0_1_0),
            Provider::V0_1_1(pre) => pre.instantiate(&mut store).map(Bound::V0_1_1),
        }
        .and_then(|bound| {
            stats.instantiate = started.elapsed();
            let started = Instant::now();
            let r = f(&bound, &mut store);
            stats.call = started.elapsed();
            r
        });
        stats.logs = std::mem::take(&mut store.data_mut().logs);
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
        if stderr.is_empty() {
            PluginError::Trap(trap)
        } else {
            PluginError::Trap(format!("{trap}; it printed: {stderr}"))
        }
    }
}

/// An instance, for the duration of one call.
enum Bound {
    V0_1_0(v0_1_0::Plugin),
    V0_1_1(v0_1_1::Plugin),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_contract_has_bindings_and_a_wit_folder() {
        for version in SUPPORTED_CONTRACTS {
            let wit = format!("{}/../wit/v{version}/provider.wit", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&wit).unwrap_or_else(|e| panic!("{wit}: {e}"));
            assert!(text.contains(&format!("package provision:provider@{version};")), "{wit} declares {version}");
        }
    }
}
