//! Commands in containers: streamed output, or attached with input (a
//! piped dump, a terminal); start with input attached; attach to a
//! running one; and resources listed by label (for `gc`).

use std::collections::HashMap;

use bollard::{
    models::ExecConfig,
    query_parameters::{AttachContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder},
};
use futures_util::StreamExt;

use crate::engine::{Engine, EngineError, ExecCommand, Input, Kind, Labeled, OnOutput, OutputStream, Result};

use super::Docker;

impl Docker {
    pub(super) async fn exec_streaming(&self, id: &str, command: ExecCommand<'_>, on_output: &mut OnOutput<'_>) -> Result<i64> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.command.to_vec()),
            user: command.user.map(str::to_string),
            env: Some(command.env.to_vec()),
            ..Default::default()
        };
        let exec = self.client.create_exec(id, config).await?;
        if let bollard::exec::StartExecResults::Attached { output: mut stream, .. } = self.client.start_exec(&exec.id, None).await? {
            while let Some(chunk) = stream.next().await {
                match chunk? {
                    bollard::container::LogOutput::StdErr { message } => on_output(OutputStream::Stderr, &message),
                    other => on_output(OutputStream::Stdout, &other.into_bytes()),
                }
            }
        }
        self.exit_code(&exec.id).await
    }

    pub(super) async fn exec_with_input(
        &self,
        id: &str,
        command: ExecCommand<'_>,
        stdin: Input,
        tty: Option<(u16, u16)>,
        on_output: &mut OnOutput<'_>,
    ) -> Result<i64> {
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty.is_some()),
            cmd: Some(command.command.to_vec()),
            user: command.user.map(str::to_string),
            env: Some(command.env.to_vec()),
            ..Default::default()
        };
        let exec = self.client.create_exec(id, config).await?;
        if let bollard::exec::StartExecResults::Attached { output, input } = self.client.start_exec(&exec.id, None).await? {
            if let Some((width, height)) = tty {
                // Best effort: a command that starts before it sees its size still runs.
                let _ = self.client.resize_exec(&exec.id, bollard::exec::ResizeExecOptions { width, height }).await;
            }
            pump(output, input, Some(stdin), tty.is_some(), on_output).await?;
        }
        self.exit_code(&exec.id).await
    }

    pub(super) async fn start_with_input(
        &self,
        id: &str,
        stdin: Option<Input>,
        tty: Option<(u16, u16)>,
        on_output: &mut OnOutput<'_>,
    ) -> Result<i64> {
        // Attached before it starts, so not a byte of its output is missed.
        let options = AttachContainerOptionsBuilder::default().stream(true).stdin(stdin.is_some()).stdout(true).stderr(true).build();
        let attached = self.client.attach_container(id, Some(options)).await?;
        self.start(id).await?;
        if let Some(size) = tty {
            let _ = self.resize_tty(id, size).await;
        }
        pump(attached.output, attached.input, stdin, tty.is_some(), on_output).await?;
        self.wait_exit(id).await
    }

    pub(super) async fn attach_running(
        &self,
        id: &str,
        stdin: Option<Input>,
        tty: Option<(u16, u16)>,
        detach_keys: &str,
        on_output: &mut OnOutput<'_>,
    ) -> Result<()> {
        let options =
            AttachContainerOptionsBuilder::default().stream(true).stdin(stdin.is_some()).stdout(true).stderr(true).detach_keys(detach_keys).build();
        let attached = self.client.attach_container(id, Some(options)).await?;
        if let Some(size) = tty {
            // Best effort, as for exec: a process that misses it still runs.
            let _ = self.resize_tty(id, size).await;
        }
        pump(attached.output, attached.input, stdin, tty.is_some(), on_output).await
    }

    pub(super) async fn list_labeled(&self, label: &str) -> Result<Vec<Labeled>> {
        let filter = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let containers = self.client.list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filter).build()));
        let networks = self.client.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filter).build()));
        let volumes = self.client.list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filter).build()));
        let (containers, networks, volumes) = futures_util::try_join!(containers, networks, volumes)?;
        let mut found: Vec<Labeled> = containers
            .into_iter()
            .map(|c| Labeled {
                kind: Kind::Container,
                id: c.id.unwrap_or_default(),
                name: c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
            })
            .collect();
        found.extend(networks.into_iter().map(|n| Labeled {
            kind: Kind::Network,
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            labels: n.labels.unwrap_or_default(),
        }));
        found.extend(volumes.volumes.unwrap_or_default().into_iter().map(|v| Labeled {
            kind: Kind::Volume,
            id: v.name.clone(),
            name: v.name,
            labels: v.labels,
        }));
        Ok(found)
    }
}

/// Copy `stdin` to an attached command while its output streams to
/// `on_output`, until the output ends. At the end of input the write side
/// is shut, so the command reads end-of-file (a piped dump ends); not on a
/// terminal, though: the engine would end the session with it (keys,
/// Ctrl-D included, travel as bytes there).
async fn pump(
    mut output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>,
    >,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    stdin: Option<Input>,
    tty: bool,
    on_output: &mut OnOutput<'_>,
) -> Result<()> {
    let feed = async move {
        if let Some(mut stdin) = stdin {
            let _ = tokio::io::copy(&mut stdin, &mut input).await;
            if !tty {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut input).await;
            }
        }
        std::future::pending::<()>().await
    };
    let drain = async {
        while let Some(chunk) = output.next().await {
            match chunk? {
                bollard::container::LogOutput::StdErr { message } => on_output(OutputStream::Stderr, &message),
                other => on_output(OutputStream::Stdout, &other.into_bytes()),
            }
        }
        Ok::<(), EngineError>(())
    };
    tokio::select! {
        result = drain => result,
        () = feed => Ok(()),
    }
}
