//! The sandbox a plugin call runs in: the store data of one call. WASI is
//! there only so components built with std instantiate; it grants nothing
//! (no files, sockets, environment or arguments; frozen clocks; fixed-seed
//! random). Memory growth is capped, and log lines are bounded.

use std::{sync::Arc, time::Duration};

use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView, p2::pipe::MemoryOutputPipe};

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
            memory: MemoryCap { cap: limits.memory_bytes, refused: None },
            stderr,
            context,
            logs: Vec::new(),
        }
    }

    pub(super) fn log(&mut self, level: LogLevel, message: String) {
        // Bounded: a chatty plugin must not grow the host without limit.
        if self.logs.len() < 1000 {
            self.logs.push((level, message.chars().take(2000).collect()));
        }
    }

    pub(super) fn secret(&mut self, name: &str) -> String {
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
pub(super) struct MemoryCap {
    pub(super) cap: usize,
    pub(super) refused: Option<usize>,
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
