//! Readiness: probe a started container from the host (HTTP and TCP
//! straight to its address; exec through the engine) with a fast, growing
//! backoff, then run its startup hooks. Must not start or create anything.

use std::time::{Duration, Instant};

use super::{Failure, events::Phase, schedule::ServiceRun};
use crate::{
    desired::{Container, Probe, ServiceState},
    engine::ExecCommand,
};

impl ServiceRun<'_> {
    /// Wait until the container passes its probe, then run its hooks (only
    /// when it was just started: hooks belong to a container's first start),
    /// and record in the journal that its lifecycle finished. Every wait,
    /// exec probes and hooks included, ends at `deadline`.
    pub(super) async fn ready(&self, service: &ServiceState, c: &Container, id: &str, fresh: bool, deadline: Instant) -> Result<(), Failure> {
        let name = &service.name;
        let container_name = self.names.container(name, &c.name);
        let mut failure = Failure {
            service: name.clone(),
            waiting_for: format!("waiting for `{}` to be ready", c.name),
            reason: String::new(),
            last_probe: None,
            container: Some(container_name.clone()),
            log_tail: None,
        };
        let mut started_at = None;
        if let Some(health) = &c.health {
            self.emit(name, Phase::Probing(c.name.clone()));
            let mut backoff = Backoff::for_probe(&health.probe);
            loop {
                let status = self.engine.status(id).await.map_err(|e| Failure { reason: e.to_string(), ..failure.clone() })?;
                started_at = status.started_at.clone();
                // A kept container that the engine finds healthy, or that was
                // seen ready in this same start, needs no probe: that keeps a
                // no-op `up` to a few engine calls.
                let seen = started_at.is_some() && self.options.journal.ready_in(id) == started_at;
                if !fresh
                    && status.running
                    && (status.health.as_deref() == Some("healthy") || (seen && status.health.as_deref() != Some("unhealthy")))
                {
                    break;
                }
                if self.options.is_interrupted() {
                    failure.reason = "interrupted".into();
                    return Err(failure);
                }
                if !status.running {
                    failure.reason = format!("its container exited (code {})", status.exit_code.unwrap_or(-1));
                    failure.log_tail = self.engine.log_tail(id, 20).await.ok();
                    return Err(failure);
                }
                // A probe gets its own timeout, and never past the deadline.
                let limit = Instant::now() + Duration::from_millis(u64::from(health.timeout_ms.max(100)));
                let probe = self.probe(id, &health.probe, status.ip.as_deref());
                let (ok, output) = match tokio::time::timeout_at(limit.min(deadline).into(), probe).await {
                    Ok(answer) => answer,
                    Err(_) if limit <= deadline => (false, format!("the probe did not answer within {} ms", health.timeout_ms.max(100))),
                    // Cut by --timeout: the probe before it says more.
                    Err(_) => (false, failure.last_probe.take().unwrap_or_else(|| "the probe did not answer before --timeout".into())),
                };
                if ok {
                    break;
                }
                failure.last_probe = Some(output);
                if Instant::now() > deadline {
                    failure.reason = format!("not ready after {:?}", self.options.timeout);
                    failure.log_tail = self.engine.log_tail(id, 20).await.ok();
                    return Err(failure);
                }
                backoff.sleep().await;
            }
        }
        if fresh {
            for hook in &c.hooks {
                self.emit(name, Phase::Hook(hook.name.clone()));
                let env: Vec<String> = hook.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let exec = self.engine.exec(id, ExecCommand { command: &hook.command, user: hook.user.as_deref(), env: &env });
                let (code, output) = match tokio::time::timeout_at(deadline.into(), exec).await {
                    Ok(result) => result.map_err(|e| Failure { reason: e.to_string(), ..failure.clone() })?,
                    Err(_) => {
                        failure.waiting_for = format!("running hook `{}`", hook.name);
                        failure.reason = format!("it did not finish within the {:?} of --timeout", self.options.timeout);
                        return Err(failure);
                    }
                };
                if code != 0 {
                    failure.waiting_for = format!("running hook `{}`", hook.name);
                    failure.reason = format!("it exited with code {code}");
                    failure.last_probe = Some(output);
                    return Err(failure);
                }
            }
        }
        self.options.journal.done(id, started_at);
        Ok(())
    }

    /// One readiness probe: (ready, output worth showing if not).
    async fn probe(&self, id: &str, probe: &Probe, ip: Option<&str>) -> (bool, String) {
        match probe {
            Probe::Exec(cmd) => match self.engine.exec(id, ExecCommand { command: cmd, ..ExecCommand::default() }).await {
                Ok((code, output)) => (code == 0, format!("exit {code}: {output}")),
                Err(e) => (false, e.to_string()),
            },
            Probe::Tcp(port) => match ip {
                Some(ip) => match tokio::net::TcpStream::connect((ip, *port)).await {
                    Ok(_) => (true, String::new()),
                    Err(e) => (false, format!("connect {ip}:{port}: {e}")),
                },
                None => (false, "the container has no address yet".into()),
            },
            Probe::Http { port, path } => match ip {
                Some(ip) => http_get(ip, *port, path).await,
                None => (false, "the container has no address yet".into()),
            },
        }
    }
}

/// An HTTP GET from the host (hyper, HTTP/1.1): ready on 2xx or 3xx.
async fn http_get(ip: &str, port: u16, path: &str) -> (bool, String) {
    use http_body_util::Empty;
    use hyper::body::Bytes;

    let url = format!("http://{ip}:{port}{path}");
    let attempt = async {
        let request = hyper::Request::get(path).header(hyper::header::HOST, format!("{ip}:{port}")).body(Empty::<Bytes>::new())?;
        let stream = tokio::net::TcpStream::connect((ip, port)).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        // The connection is driven beside the request, and dropped with it.
        let connection = tokio::spawn(connection);
        let response = sender.send_request(request).await;
        connection.abort();
        Ok::<_, crate::engine::BoxError>(response?.status())
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(Ok(status)) => (status.is_success() || status.is_redirection(), format!("GET {url}: {status}")),
        Ok(Err(e)) => (false, format!("GET {url}: {e}")),
        Err(_) => (false, format!("GET {url}: no answer in 3 s")),
    }
}

/// Probe delays: start small and grow by half each time, so readiness is
/// seen within tens of milliseconds. HTTP and TCP probes come from the host
/// and cost nothing: up to 250 ms apart. An exec probe starts a process in
/// the container through the engine, which costs CPU the services starting
/// beside it need: up to 500 ms apart.
struct Backoff {
    delay: Duration,
    cap: Duration,
}

impl Backoff {
    fn for_probe(probe: &Probe) -> Self {
        let cap = if matches!(probe, Probe::Exec(_)) { 500 } else { 250 };
        Backoff { delay: Duration::from_millis(25), cap: Duration::from_millis(cap) }
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 3 / 2).min(self.cap);
    }
}
