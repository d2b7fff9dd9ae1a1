//! The `provision` command line.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Args, Parser, Subcommand};
use provision::{
    plan::{self, Options},
    runtime::{CompileCache, Limits, LogLevel, Runtime, SUPPORTED_CONTRACTS},
    secrets::Secrets,
    stack::Stack,
    ui,
};

#[derive(Parser)]
#[command(
    name = "provision",
    version,
    about = "Stand up whole development, test and CI environments from one stack.toml",
    long_about = "Stand up whole development, test and CI environments from one stack.toml.\n\n\
        Each service in stack.toml is planned by a plugin (a sandboxed WebAssembly component): \
        postgres, redis and others are built in, and you can load your own from a path.",
    after_help = "Examples:\n  provision plan                     show what the stack in ./stack.toml needs\n  \
        provision plan -f examples/quickstart/stack.toml --json\n  \
        provision plan --profile test       plan for the test profile (tmpfs databases, random ports)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the desired state: every container, task, volume and output the
    /// plugins ask for. Needs no container engine.
    Plan(PlanArgs),
    /// Print provision's version and the plugin contract versions it loads.
    Version,
}

#[derive(Args)]
struct StackArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", default_value = "stack.toml", value_name = "FILE")]
    file: PathBuf,
    /// Project name: identifies this environment on the engine. Default: the
    /// stack's name.
    #[arg(short = 'p', long = "project", value_name = "NAME")]
    project: Option<String>,
    /// Profile to plan for: dev, test, ci, prod or your own. Default: the
    /// stack's `profile`, else dev.
    #[arg(long, value_name = "NAME", env = "PROVISION_PROFILE")]
    profile: Option<String>,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Print the full desired state as JSON (with each container's spec hash).
    #[arg(long)]
    json: bool,
    /// Print secrets (generated passwords, secret outputs) instead of masking them.
    #[arg(long)]
    show_secrets: bool,
    /// Also print what plugins logged below warning level.
    #[arg(short, long)]
    verbose: bool,
    /// Print how long resolving, loading and calling each plugin took (to stderr).
    #[arg(long)]
    timings: bool,
}

fn main() -> ExitCode {
    miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().terminal_links(false).unicode(true).build())))
        .expect("the hook is set once");
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> miette::Result<()> {
    match cli.command {
        Command::Plan(args) => plan_command(args),
        Command::Version => {
            let contracts: Vec<String> = SUPPORTED_CONTRACTS.iter().map(|v| v.to_string()).collect();
            println!("provision {}", env!("CARGO_PKG_VERSION"));
            println!("plugin contracts: {}", contracts.join(", "));
            for b in provision_registry::builtins() {
                println!("builtin plugin {} {} (contract {}, sha256:{})", b.name, b.version, b.contract, b.sha256);
            }
            Ok(())
        }
    }
}

fn plan_command(args: PlanArgs) -> miette::Result<()> {
    let stack = Stack::load(&args.stack.file)?;
    let options = Options {
        project: args.stack.project.clone().unwrap_or_else(|| stack.name.clone()),
        profile: args.stack.profile.clone().or_else(|| stack.profile.clone()).unwrap_or_else(|| "dev".into()),
    };
    let secrets = Arc::new(Secrets::for_project_dir(&stack.dir).map_err(|e| miette::miette!("{e:#}"))?);
    let runtime = Runtime::new(CompileCache::default_location(), Limits::default())
        .map_err(|e| miette::miette!("cannot start the plugin runtime: {e:#}"))?;
    let planned = plan::plan(&stack, &runtime, secrets.clone(), &options)?;
    let masker = ui::Masker::new(&planned.state, &secrets, args.show_secrets);
    for (level, message) in &planned.logs {
        if *level == LogLevel::Warn || args.verbose {
            eprintln!("{}: {}", format!("{level:?}").to_lowercase(), masker.mask(message));
        }
    }
    if args.json {
        println!("{}", ui::plan_json(&planned.state, &masker));
    } else {
        print!("{}", ui::plan_summary(&planned.state, &stack.name, &masker));
    }
    if args.timings {
        eprint!("{}", ui::timings_report(&planned.timings));
    }
    Ok(())
}
