//! `provision attach SERVICE`: this terminal on a service's main process,
//! as `docker attach` does, for byebug, pry or pdb at a breakpoint. The
//! detach keys (ctrl-p ctrl-q) leave it running; nothing of the container
//! changes.

use std::{io::IsTerminal, process::ExitCode};

use miette::miette;
use tokio::signal::unix::{SignalKind, signal};

use super::{
    args::AttachArgs,
    inspect::{leave, print, terminal},
    project_containers, service_container,
};
use crate::engine::{Engine, Input};

pub async fn run(args: AttachArgs) -> miette::Result<ExitCode> {
    let (project, engine, containers) = project_containers(&args.project).await?;
    let target = service_container(&project, &containers, &args.service, args.container.as_deref())?;
    let service = &args.service;
    let before = engine.status(&target.id).await?;
    if !before.running {
        return Err(miette!(help = format!("`provision start {service}` starts it again"), "{} is not running", target.name));
    }
    // The container's TTY was made when it was created; ours goes raw only
    // when it is one too (a piped script types into it as it is).
    let typed = before.stdin_open && !args.no_stdin;
    let tty = (typed && before.tty).then(|| terminal::size().unwrap_or((80, 24)));
    let local_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let name = format!("{service}/{}", target.label("container").unwrap_or("server"));
    eprintln!("{}", greeting(&args, before.stdin_open, tty.is_some(), &name));

    let raw = if tty.is_some() && local_terminal { terminal::Raw::enable() } else { None };
    let stdin = typed.then(|| Box::new(tokio::io::stdin()) as Input);
    let mut output = print;
    let attached = engine.attach(&target.id, stdin, tty, &args.detach_keys, &mut output);
    let result = tokio::select! {
        result = attached => result,
        () = follow_resizes(engine.as_ref(), &target.id), if raw.is_some() => Ok(()),
        // Off a TTY the detach keys are not read: Ctrl-C detaches instead
        // of reaching the process (it is the team's, not this terminal's).
        _ = tokio::signal::ctrl_c(), if raw.is_none() => Ok(()),
    };
    drop(raw);
    result?;

    let after = engine.status(&target.id).await?;
    if !after.running {
        let code = after.exit_code.unwrap_or(1);
        eprintln!("\n{service}'s main process exited with code {code}");
        leave(code);
    }
    if after.started_at != before.started_at {
        eprintln!("\n{service}'s main process ended and the engine started it again (its restart policy); `provision attach {service}` again");
    } else {
        eprintln!("\ndetached from {service}: it is still running");
    }
    leave(0)
}

/// What the attach passes and how it ends, before the process's output.
fn greeting(args: &AttachArgs, stdin_open: bool, tty: bool, name: &str) -> String {
    let service = &args.service;
    if !stdin_open {
        return format!(
            "attached to {name}, its output only: it was started without stdin (Ctrl-C detaches). To type into it (byebug, pry, pdb), \
             set `stdin_open = true` and `tty = true` under [services.{service}] and run `provision up {service}`"
        );
    }
    match (args.no_stdin, tty) {
        (true, _) => format!("attached to {name}, its output only (Ctrl-C detaches)"),
        (false, true) => format!("attached to {name}; {} detaches and leaves it running", args.detach_keys.replace(',', " ")),
        (false, false) => format!("attached to {name}, without a TTY (`tty = true` gives it one); Ctrl-C detaches and leaves it running"),
    }
}

/// `--detach-keys` in Docker's notation, checked here rather than by the
/// engine once attached: keys joined by commas, each a character or
/// `ctrl-` and a letter or one of `@[\]^_`.
pub fn detach_keys(text: &str) -> Result<String, String> {
    let key = |k: &str| match k.strip_prefix("ctrl-") {
        Some(c) => c.len() == 1 && c.chars().all(|c| c.is_ascii_lowercase() || "@[\\]^_".contains(c)),
        None => k.chars().count() == 1,
    };
    if !text.is_empty() && text.split(',').all(key) {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?} is not a key sequence: keys joined by commas, each a character or ctrl- and a letter (ctrl-p,ctrl-q)"))
    }
}

/// Keep the container's TTY the size of ours as ours is resized. Never
/// ends.
async fn follow_resizes(engine: &dyn Engine, id: &str) {
    if let Ok(mut changes) = signal(SignalKind::window_change()) {
        while changes.recv().await.is_some() {
            if let Some(size) = terminal::size() {
                let _ = engine.resize_tty(id, size).await;
            }
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::detach_keys;

    #[test]
    fn detach_keys_are_checked_in_dockers_notation() {
        for good in ["ctrl-p,ctrl-q", "ctrl-x,x", "ctrl-@", "ctrl-\\,q"] {
            assert_eq!(detach_keys(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["", "ctrl-", "ctrl-pq", "ctrl-P", "p,,q", "ab"] {
            assert!(detach_keys(bad).unwrap_err().contains("not a key sequence"), "{bad}");
        }
    }
}
