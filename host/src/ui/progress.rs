//! `up`'s progress: a live line per service on a terminal, plain lines in
//! logs, or one JSON event per line with `--json`.

use crate::apply;

/// Live progress of `up`: a line per service with its phase and elapsed
/// time on a terminal; plain lines otherwise.
pub struct Progress {
    bars: indicatif::MultiProgress,
    services: std::sync::Mutex<Vec<(String, indicatif::ProgressBar)>>,
    plain: bool,
}

impl Progress {
    pub fn new(services: &[&str]) -> Self {
        use std::io::IsTerminal;
        let plain = !std::io::stderr().is_terminal();
        let bars = indicatif::MultiProgress::new();
        let width = services.iter().map(|s| s.len()).max().unwrap_or(0);
        let style =
            indicatif::ProgressStyle::with_template(&format!("{{spinner}} {{prefix:{width}}}  {{msg}} {{elapsed:.dim}}")).expect("a valid template");
        let list = services
            .iter()
            .map(|s| {
                let bar = if plain { indicatif::ProgressBar::hidden() } else { bars.add(indicatif::ProgressBar::new_spinner()) };
                bar.set_style(style.clone());
                bar.set_prefix(s.to_string());
                bar.set_message("pending");
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
                (s.to_string(), bar)
            })
            .collect();
        Progress { bars, services: std::sync::Mutex::new(list), plain }
    }

    pub fn finish(&self) {
        for (_, bar) in self.services.lock().unwrap().iter() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
        let _ = self.bars.clear();
    }
}

fn describe(phase: &apply::Phase) -> String {
    use apply::Phase::*;
    match phase {
        Waiting(dep) => format!("waiting for {dep}"),
        Building(line) => format!("building: {}", line.chars().take(80).collect::<String>()),
        Task(name) => format!("running task {name}"),
        Creating(name) => format!("creating {name}"),
        Starting => "starting".into(),
        Probing(name) => format!("waiting for {name} to be ready"),
        Hook(name) => format!("hook: {name}"),
        Snapshot(what) => what.clone(),
        Ready => "ready".into(),
        Kept => "up to date".into(),
        Failed(reason) => format!("failed: {reason}"),
    }
}

impl apply::Events for Progress {
    fn emit(&self, event: apply::Event) {
        use apply::Phase;
        // Build output and failure reasons come from containers: masked, escaped.
        let text = super::printable(&describe(&event.phase));
        let done = matches!(event.phase, Phase::Ready | Phase::Kept | Phase::Failed(_));
        if self.plain {
            // Build output too: in a CI log it is the only sign of a long build.
            if done || !matches!(event.phase, Phase::Waiting(_)) {
                eprintln!("{:>7.2}s  {}  {text}", event.elapsed_ms as f64 / 1000.0, event.service);
            }
            return;
        }
        let services = self.services.lock().unwrap();
        if let Some((_, bar)) = services.iter().find(|(s, _)| *s == event.service) {
            if done {
                let mark = if matches!(event.phase, Phase::Failed(_)) { "✗" } else { "✓" };
                bar.set_style(indicatif::ProgressStyle::with_template("{prefix} {msg}").expect("a valid template"));
                bar.set_prefix(format!("{mark} {}", event.service));
                bar.finish_with_message(format!(" {text} ({:.2}s)", event.elapsed_ms as f64 / 1000.0));
            } else {
                bar.set_message(text);
            }
        }
    }
}

/// `up --json`: one JSON object per line on stdout.
pub struct JsonEvents;

impl apply::Events for JsonEvents {
    fn emit(&self, event: apply::Event) {
        let mut value = serde_json::to_value(&event).expect("an event serializes");
        value["event"] = "service".into();
        println!("{}", crate::secrets::redact(&value.to_string()));
    }
}
