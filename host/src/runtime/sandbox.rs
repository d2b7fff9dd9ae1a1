//! The sandbox a plugin call runs in: the store data of one call. WASI is
//! there only so components built with std instantiate; it grants nothing
//! (no files, sockets, environment or arguments; frozen clocks; fixed-seed
//! random). Nothing a plugin can call blocks: sleeps and clock pollables are
//! ready at once, so the epoch deadline is the only clock that matters.
//! Memory is capped per instance (all memories and tables together), and
//! log lines and `host.secret` calls are bounded.

use std::{sync::Arc, time::Duration};

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::{
    ResourceTable, WasiCtx, WasiCtxView, WasiView,
    p2::{DynPollable, Pollable, bindings::clocks::monotonic_clock, pipe::MemoryOutputPipe, subscribe},
};

use super::{CallContext, Limits};

/// The store data of one call: an empty WASI context (no files, sockets,
/// environment or arguments; frozen clocks; fixed-seed random) and the
/// contract's host state.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) stderr: MemoryOutputPipe,
    context: Option<Arc<CallContext>>,
    pub(super) logs: Vec<(LogLevel, String)>,
    /// `host.secret` calls so far, and whether one was refused.
    secret_calls: usize,
    pub(super) secrets_refused: bool,
}

/// `host.secret` calls one plugin call may make, and the longest name: a
/// plugin needs a handful; a million would keep the host busy deriving.
pub const MAX_SECRET_CALLS: usize = 1000;
const MAX_SECRET_NAME: usize = 128;

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
    pub(super) fn new(limits: &Limits, context: Option<Arc<CallContext>>) -> Self {
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
            memory: MemoryCap { cap: limits.memory_bytes, ..MemoryCap::default() },
            stderr,
            context,
            logs: Vec::new(),
            secret_calls: 0,
            secrets_refused: false,
        }
    }

    pub(super) fn log(&mut self, level: LogLevel, message: String) {
        // Bounded: a chatty plugin must not grow the host without limit.
        if self.logs.len() < 1000 {
            self.logs.push((level, message.chars().take(2000).collect()));
        }
    }

    pub(super) fn secret(&mut self, name: &str) -> String {
        self.secret_calls += 1;
        if self.secret_calls > MAX_SECRET_CALLS || name.len() > MAX_SECRET_NAME {
            // The call's result is refused afterwards (see `Runtime::explain`).
            self.secrets_refused = true;
            return String::new();
        }
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

/// Refuses growth past the cap, counted over every memory and table of the
/// instance (a component may declare many), and remembers that it did, so
/// the trap that follows is reported as what it is.
#[derive(Default)]
pub(super) struct MemoryCap {
    pub(super) cap: usize,
    pub(super) refused: Option<usize>,
    /// Bytes of every linear memory, and table elements, so far.
    memory_total: usize,
    table_total: usize,
}

/// Table elements (function references) one instance may hold in all.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_total.saturating_add(desired.saturating_sub(current));
        if total > self.cap {
            self.refused = Some(total);
            return Ok(false);
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_total.saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_total = total;
        Ok(true)
    }

    fn memories(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        64
    }

    fn instances(&self) -> usize {
        64
    }
}

/// `wasi:clocks/monotonic-clock` against the frozen clock, with pollables
/// that are ready at once: `std::thread::sleep(an hour)` returns
/// immediately, so no plugin call can block the host in a sleep.
pub(super) fn add_frozen_clock(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    struct Frozen;
    impl HasData for Frozen {
        type Data<'a> = FrozenMonotonic<'a>;
    }
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<Sandbox, Frozen>(linker, |s| FrozenMonotonic { table: &mut s.table })?;
    linker.allow_shadowing(false);
    Ok(())
}

pub(super) struct FrozenMonotonic<'a> {
    table: &'a mut ResourceTable,
}

struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

impl FrozenMonotonic<'_> {
    fn ready(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let ready = self.table.push(Ready)?;
        subscribe(self.table, ready)
    }
}

impl monotonic_clock::Host for FrozenMonotonic<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(0)
    }
    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1_000_000_000)
    }
    fn subscribe_instant(&mut self, _when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready()
    }
    fn subscribe_duration(&mut self, _duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready()
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    #[test]
    fn the_memory_cap_counts_every_memory_of_the_instance() {
        let mut cap = MemoryCap { cap: 64 << 20, ..MemoryCap::default() };
        // Five memories of 16 MiB each: each alone is under the cap, together over it.
        let grants: Vec<bool> = (0..5).map(|_| cap.memory_growing(0, 16 << 20, None).unwrap()).collect();
        assert_eq!(grants, [true, true, true, true, false]);
        assert_eq!(cap.refused, Some(80 << 20));
        // Growing one that exists counts only the growth.
        let mut cap = MemoryCap { cap: 64 << 20, ..MemoryCap::default() };
        assert!(cap.memory_growing(0, 32 << 20, None).unwrap());
        assert!(cap.memory_growing(32 << 20, 64 << 20, None).unwrap());
        assert!(!cap.memory_growing(64 << 20, (64 << 20) + 65536, None).unwrap());
    }
}
