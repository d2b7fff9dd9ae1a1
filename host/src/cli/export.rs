//! `provision export`: the stack as a Compose file.

use std::{io::Write, os::unix::fs::OpenOptionsExt, process::ExitCode};

use miette::IntoDiagnostic;

use super::{Prepared, args::ExportArgs, prepare};

pub fn run(args: ExportArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, .. } = prepare(&args.stack, args.stack.locked)?;
    let exported = crate::export::compose(&planned.state, &stack.dir).map_err(|e| miette::miette!("{e}"))?;
    let Some(path) = &args.output else {
        print!("{}", exported.yaml);
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::write(path, &exported.yaml).into_diagnostic()?;
    eprintln!("wrote {}", path.display());
    if args.with_secrets {
        let env = super::folder_of(path).join(".env");
        // Secrets: readable by their owner only.
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&env).into_diagnostic()?;
        for (name, value) in &exported.secrets {
            writeln!(file, "{name}={}", dotenv_quoted(value)).into_diagnostic()?;
        }
        eprintln!("wrote {} ({} secrets; keep it out of version control)", env.display(), exported.secrets.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// A value as compose's .env reads it back unchanged: single quotes take it
/// as it is; one holding a single quote goes in double quotes, escaped.
fn dotenv_quoted(value: &str) -> String {
    if !value.contains('\'') {
        return format!("'{value}'");
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('\n', "\\n");
    format!("\"{escaped}\"")
}
