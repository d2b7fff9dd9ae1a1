//! `provision import`: a Compose project as a stack.toml, and the report.

use std::process::ExitCode;

use miette::IntoDiagnostic;

use super::args::ImportArgs;
use crate::{
    engine::plain,
    import::{self, Options},
};

pub fn run(args: ImportArgs) -> miette::Result<ExitCode> {
    let started = std::time::Instant::now();
    let files = if args.files.is_empty() {
        import::default_files(&std::env::current_dir().into_diagnostic()?).map_err(|e| miette::miette!("{e}"))?
    } else {
        args.files.clone()
    };
    let to_stdout = args.output.as_deref() == Some(std::path::Path::new("-"));
    let output = match &args.output {
        Some(path) if !to_stdout => path.clone(),
        _ => super::folder_of(&files[0]).join("stack.toml"),
    };
    let out_dir = super::folder_of(&output);
    let options = Options {
        files: &files,
        env_file: args.env_file.as_deref(),
        profiles: &args.profiles,
        project_name: args.project_name.as_deref(),
        out_dir: &out_dir,
        grant: args.grant,
    };
    // Names and values from a compose file of anywhere reach the terminal
    // with their control characters escaped (SECURITY.md).
    let refuse = |e: String| miette::miette!(help = "the compose file must be one `docker compose config` accepts", "cannot import: {}", plain(&e));
    if args.config {
        let config = import::config(&options).map_err(refuse)?;
        println!("{}", serde_json::to_string_pretty(&config).into_diagnostic()?);
        return Ok(ExitCode::SUCCESS);
    }
    // Only a write can clobber: `--config` prints and writes nothing.
    if !to_stdout && output.exists() && !args.force {
        miette::bail!("{} exists; pass --force to replace it, or -o another file (-o - prints it)", output.display());
    }
    let imported = import::import(&options).map_err(refuse)?;
    // --strict: the stack must be the compose project, and must plan.
    let refused = args.strict && (imported.report.dropped > 0 || !imported.report.not_granted.is_empty());
    if args.json {
        let mut json = serde_json::to_value(&imported.report).into_diagnostic()?;
        json["elapsed_ms"] = serde_json::json!(started.elapsed().as_millis() as u64);
        json["written"] = serde_json::json!(!refused && !to_stdout);
        let text = serde_json::to_string_pretty(&json).into_diagnostic()?;
        if to_stdout { eprintln!("{text}") } else { println!("{text}") }
    } else {
        eprint!("{}", plain(&imported.report.human()));
    }
    if refused {
        let (dropped, powers) = (imported.report.dropped, imported.report.not_granted.len());
        let mut why = Vec::new();
        if dropped > 0 {
            why.push(format!("{dropped} key(s) would be dropped"));
        }
        if powers > 0 {
            why.push(format!(
                "{powers} power(s) are not granted (the stack would not plan; grant them with --grant, if you trust the compose file with them)"
            ));
        }
        eprintln!("\n--strict: {}; nothing written", why.join(" and "));
        return Ok(ExitCode::FAILURE);
    }
    if to_stdout {
        print!("{}", imported.toml);
        for (path, _) in &imported.files {
            eprintln!("not written (-o - writes no file): {}, which stack.toml names; import with -o FILE to write it", path.display());
        }
    } else {
        // What the compose file held inline, as the files stack.toml names.
        for (path, text) in &imported.files {
            if !args.force && std::fs::read_to_string(path).is_ok_and(|there| there != *text) {
                miette::bail!("{} exists and differs from the compose file's inline Dockerfile; pass --force to replace it", path.display());
            }
        }
        for (path, text) in &imported.files {
            std::fs::write(path, text).into_diagnostic()?;
        }
        std::fs::write(&output, &imported.toml).into_diagnostic()?;
        if !args.json {
            eprintln!(
                "\nwrote {} ({} ms); `provision plan -f {}` shows what it runs",
                output.display(),
                started.elapsed().as_millis(),
                output.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
