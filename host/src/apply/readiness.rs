//! Readiness: probe a started container from the host (HTTP, TCP and the
//! PostgreSQL and Redis protocols straight to its address; exec through the
//! engine) with a fast, growing backoff, then run its startup hooks. Must
//! not start or create anything.

use std::time::{Duration, Instant};

use super::{
    context::{Failure, Up},
    events::Phase,
};
use crate::{
    desired::{Container, Probe, ServiceState},
    engine::{ExecCommand, Reach, Status},
};

/// Restarts during one wait that make a container crash-looping: more
/// than one that crashed once at start would need, few enough to fail
/// within a second or two (the engine's restart delay starts at 100 ms and
/// doubles).
const CRASH_LOOP_RESTARTS: u32 = 3;

/// Wait until the container passes its probe, then run its hooks (only
/// when it was just started: hooks belong to a container's first start),
/// and record in the journal that its lifecycle finished. Every wait,
/// exec probes and hooks included, ends at `deadline`.
pub(super) async fn ready(up: &Up<'_, '_>, service: &ServiceState, c: &Container, id: &str, fresh: bool, deadline: Instant) -> Result<(), Failure> {
    let name = &service.name;
    let container_name = up.names.container(name, &c.name);
    let mut failure = Failure { container: Some(container_name.clone()), ..Failure::new(name, &format!("waiting for `{}` to be ready", c.name), "") };
    let mut started_at = None;
    if up.engine.reach().await == Reach::Engine {
        up.emit(name, Phase::Probing(c.name.clone()));
        started_at = engine_says_ready(up, id, &mut failure, deadline).await?;
    } else if let Some(health) = &c.health {
        up.emit(name, Phase::Probing(c.name.clone()));
        let mut backoff = Backoff::for_probe(&health.probe);
        let mut restarts_before = None;
        loop {
            let status = up.engine.status(id).await.map_err(|e| Failure { reason: e.to_string(), ..failure.clone() })?;
            started_at = status.started_at.clone();
            // Restarted again and again under its restart policy: it will not
            // get ready, so fail now, not at the timeout.
            if let Some(now) = status.restarts {
                let before = *restarts_before.get_or_insert(now);
                if now >= before + CRASH_LOOP_RESTARTS {
                    let code = status.exit_code.unwrap_or(-1);
                    failure.reason =
                        format!("its container keeps exiting (code {code}): the engine restarted it {} times under its restart policy", now - before);
                    failure.log_tail = up.engine.log_tail(id, 20).await.ok();
                    return Err(failure);
                }
            }
            // A kept container that the engine finds healthy, or that was
            // seen ready in this same start, needs no probe: that keeps a
            // no-op `up` to a few engine calls.
            let seen = started_at.is_some() && up.options.journal.ready_in(id) == started_at;
            if !fresh && status.running && (status.health.as_deref() == Some("healthy") || (seen && status.health.as_deref() != Some("unhealthy"))) {
                break;
            }
            if up.options.is_interrupted() {
                failure.reason = "interrupted".into();
                return Err(failure);
            }
            if !status.running {
                failure.reason = format!("its container exited (code {})", status.exit_code.unwrap_or(-1));
                failure.log_tail = up.engine.log_tail(id, 20).await.ok();
                return Err(failure);
            }
            // A probe gets its own timeout, and never past the deadline.
            let limit = Instant::now() + Duration::from_millis(u64::from(health.timeout_ms.max(100)));
            let probe = probe(up, id, &health.probe, &status);
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
                failure.reason = format!("not ready after {:?}", up.options.timeout);
                failure.log_tail = up.engine.log_tail(id, 20).await.ok();
                return Err(failure);
            }
            backoff.sleep().await;
        }
    }
    if fresh {
        for hook in &c.hooks {
            up.emit(name, Phase::Hook(hook.name.clone()));
            let env: Vec<String> = hook.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let exec = up.engine.exec(id, ExecCommand { command: &hook.command, user: hook.user.as_deref(), env: &env });
            let (code, output) = match tokio::time::timeout_at(deadline.into(), exec).await {
                Ok(result) => result.map_err(|e| Failure { reason: e.to_string(), ..failure.clone() })?,
                Err(_) => {
                    failure.waiting_for = format!("running hook `{}`", hook.name);
                    failure.reason = format!("it did not finish within the {:?} of --timeout", up.options.timeout);
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
    up.options.journal.done(id, started_at);
    Ok(())
}

/// Wait until an engine that runs the health checks itself, in every
/// replica wherever it is (Swarm), says they all run and pass; its word
/// on a task that does not ("no suitable node", a failed pull) is the
/// failure's probe output. Returns when they started.
async fn engine_says_ready(up: &Up<'_, '_>, id: &str, failure: &mut Failure, deadline: Instant) -> Result<Option<String>, Failure> {
    let mut backoff = Backoff { delay: Duration::from_millis(50), cap: Duration::from_millis(250) };
    loop {
        let status = up.engine.status(id).await.map_err(|e| Failure { reason: e.to_string(), ..failure.clone() })?;
        if status.health.as_deref() == Some("healthy") {
            return Ok(status.started_at);
        }
        failure.last_probe = status.problem;
        if !status.running {
            failure.reason = format!("it stopped (code {})", status.exit_code.unwrap_or(-1));
        } else if up.options.is_interrupted() {
            failure.reason = "interrupted".into();
        } else if Instant::now() > deadline {
            failure.reason = format!("not ready after {:?}", up.options.timeout);
        } else {
            backoff.sleep().await;
            continue;
        }
        failure.log_tail = up.engine.log_tail(id, 20).await.ok();
        return Err(failure.clone());
    }
}

/// One readiness probe: (ready, output worth showing if not). A probe
/// of a port goes from the host where the engine lets it (see `Reach`),
/// else runs in the container as the equivalent command.
async fn probe(up: &Up<'_, '_>, id: &str, probe: &Probe, status: &Status) -> (bool, String) {
    let port = match probe {
        Probe::Exec(cmd) => return exec_probe(up, id, cmd).await,
        Probe::Http { port, .. } | Probe::Tcp(port) | Probe::Postgres(port) | Probe::Redis(port) => *port,
    };
    let published = status.published.iter().find(|(container, _)| *container == port).map(|(_, host)| *host);
    match (up.engine.reach().await, status.ip.as_deref(), published) {
        (Reach::Bridge, Some(ip), _) => from_host(ip, port, probe, false).await,
        (Reach::Bridge, None, _) => (false, "the container has no address yet".into()),
        (Reach::Published, _, Some(host_port)) => from_host("127.0.0.1", host_port, probe, true).await,
        _ => exec_probe(up, id, &probe.in_container()).await,
    }
}

async fn exec_probe(up: &Up<'_, '_>, id: &str, command: &[String]) -> (bool, String) {
    match up.engine.exec(id, ExecCommand { command, ..ExecCommand::default() }).await {
        Ok((code, output)) => (code == 0, format!("exit {code}: {output}")),
        Err(e) => (false, e.to_string()),
    }
}

/// A probe from the host to `ip`:`port` (the container's address on the
/// engine's bridge, or where a port is published): no process started in
/// the container.
async fn from_host(ip: &str, port: u16, probe: &Probe, published: bool) -> (bool, String) {
    match probe {
        Probe::Http { path, .. } => http_get(ip, port, path).await,
        Probe::Tcp(_) => match tokio::net::TcpStream::connect((ip, port)).await {
            Ok(stream) if published => forwarded(stream, ip, port).await,
            Ok(_) => (true, String::new()),
            Err(e) => (false, format!("connect {ip}:{port}: {e}")),
        },
        Probe::Postgres(_) => protocol::postgres(ip, port).await,
        Probe::Redis(_) => protocol::redis(ip, port).await,
        Probe::Exec(_) => (false, "an exec probe runs in the container".into()),
    }
}

/// A published port always accepts (the engine's proxy listens, whatever
/// runs behind it), then closes at once when nothing listens in the
/// container: ready only if the connection stays open (or the server speaks).
async fn forwarded(mut stream: tokio::net::TcpStream, ip: &str, port: u16) -> (bool, String) {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => (false, format!("connect {ip}:{port}: closed at once (nothing listens behind the published port)")),
        _ => (true, String::new()),
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
/// seen within tens of milliseconds. Probes from the host cost the engine
/// nothing (a refused connect, or one short exchange): up to 100 ms apart. An exec probe starts a process in
/// the container through the engine, which costs CPU the services starting
/// beside it need: up to 500 ms apart.
struct Backoff {
    delay: Duration,
    cap: Duration,
}

impl Backoff {
    fn for_probe(probe: &Probe) -> Self {
        let cap = if matches!(probe, Probe::Exec(_)) { 500 } else { 100 };
        Backoff { delay: Duration::from_millis(25), cap: Duration::from_millis(cap) }
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 3 / 2).min(self.cap);
    }
}

/// The two services' own readiness questions, asked over TCP the way their
/// clients ask (`pg_isready`, `redis-cli ping`), without credentials.
mod protocol {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A startup message for protocol 3.0 (user `postgres`; which user does
    /// not matter: any answer but "starting up" or "shutting down" means
    /// the server accepts connections, as pg_isready reads it).
    fn startup() -> Vec<u8> {
        let params: &[u8] = b"user\0postgres\0database\0postgres\0\0";
        let mut message = Vec::with_capacity(8 + params.len());
        message.extend_from_slice(&(8 + params.len() as u32).to_be_bytes());
        message.extend_from_slice(&196_608u32.to_be_bytes());
        message.extend_from_slice(params);
        message
    }

    pub async fn postgres(ip: &str, port: u16) -> (bool, String) {
        let address = format!("{ip}:{port}");
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
            stream.write_all(&startup()).await?;
            let mut head = [0u8; 5];
            stream.read_exact(&mut head).await?;
            let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]).saturating_sub(4).min(4096) as usize;
            let mut body = vec![0u8; length];
            if head[0] == b'E' {
                // Read what came of the error: its fields say why.
                let n = stream.read(&mut body).await?;
                body.truncate(n);
            }
            Ok::<_, std::io::Error>((head[0], body))
        };
        match attempt.await {
            // An authentication request: it takes connections.
            Ok((b'R', _)) => (true, String::new()),
            Ok((b'E', body)) => {
                let field =
                    |tag: u8| body.split(|b| *b == 0).find(|f| f.first() == Some(&tag)).map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
                let code = field(b'C').unwrap_or_default();
                let message = field(b'M').unwrap_or_default();
                // 57P03 cannot_connect_now: starting up, shutting down, in recovery.
                (code != "57P03", format!("postgres at {address}: {message} ({code})"))
            }
            Ok((kind, _)) => (false, format!("postgres at {address}: unexpected answer {:?}", kind as char)),
            Err(e) => (false, format!("postgres at {address}: {e}")),
        }
    }

    pub async fn redis(ip: &str, port: u16) -> (bool, String) {
        let address = format!("{ip}:{port}");
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
            stream.write_all(b"PING\r\n").await?;
            let mut answer = vec![0u8; 256];
            let n = stream.read(&mut answer).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer[..n]).trim_end().to_string())
        };
        match attempt.await {
            // Asking for a password is an answer from a server that is up.
            Ok(answer) if answer == "+PONG" || answer.starts_with("-NOAUTH") || answer.starts_with("-WRONGPASS") => (true, answer),
            Ok(answer) => (false, format!("redis at {address}: {answer}")),
            Err(e) => (false, format!("redis at {address}: {e}")),
        }
    }

    #[cfg(test)]
    mod tests {
        use tokio::{
            io::{AsyncReadExt, AsyncWriteExt},
            net::TcpListener,
        };

        /// A server on a free port that answers the first message with `reply`.
        async fn answering(reply: Vec<u8>) -> u16 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 256];
                let _ = socket.read(&mut request).await;
                socket.write_all(&reply).await.unwrap();
            });
            port
        }

        fn error(code: &str, message: &str) -> Vec<u8> {
            let body = format!("SFATAL\0C{code}\0M{message}\0\0");
            let mut reply = vec![b'E'];
            reply.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
            reply.extend_from_slice(body.as_bytes());
            reply
        }

        #[tokio::test]
        async fn postgres_is_ready_when_it_accepts_connections_and_not_while_starting() {
            let auth = vec![b'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4];
            assert!(super::postgres("127.0.0.1", answering(auth).await).await.0, "asked for a password");
            let starting = super::postgres("127.0.0.1", answering(error("57P03", "the database system is starting up")).await).await;
            assert!(!starting.0 && starting.1.ends_with(": the database system is starting up (57P03)"), "{starting:?}");
            let no_role = answering(error("28000", "role \"postgres\" does not exist")).await;
            assert!(super::postgres("127.0.0.1", no_role).await.0, "a refused login is an answer from a running server");
            let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
            assert!(!super::postgres("127.0.0.1", closed).await.0);
        }

        #[tokio::test]
        async fn redis_is_ready_on_pong_or_a_password_question_and_not_while_loading() {
            assert!(super::redis("127.0.0.1", answering(b"+PONG\r\n".to_vec()).await).await.0);
            assert!(super::redis("127.0.0.1", answering(b"-NOAUTH Authentication required.\r\n".to_vec()).await).await.0);
            let loading = super::redis("127.0.0.1", answering(b"-LOADING Redis is loading the dataset in memory\r\n".to_vec()).await).await;
            assert!(!loading.0 && loading.1.contains("LOADING"), "{loading:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_path_reaches_the_exec_probe_as_an_argument_not_as_script() {
        let path = "/'; rm -rf / #$(reboot)";
        let command = Probe::Http { port: 8080, path: path.into() }.in_container();
        assert_eq!(command.last().map(String::as_str), Some(path));
        assert!(command.iter().take(command.len() - 1).all(|arg| !arg.contains("rm -rf")), "{command:?}");
        assert_eq!(Probe::Postgres(5432).in_container(), ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]);
    }
}
