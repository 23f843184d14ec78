//! `mote`: run, chat with and inspect GGUF models from the command line.

mod args;
mod bench;
mod cache_files;
mod chat;
mod inspect;
mod model_path;
mod run;

use clap::Parser;

use args::{Cli, Command};

fn main() {
    let cli = Cli::parse_from(args::normalize_args(std::env::args_os()));
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Chat(a) => chat::chat(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::Bench(a) => bench::bench(a),
        Command::Serve(a) => mote_server::run(a).map_err(anyhow::Error::from),
        Command::Perplexity(a) => {
            mote_compress::cli::run_perplexity(&a).map_err(anyhow::Error::from)
        }
        Command::Quantize(a) => mote_compress::cli::run_quantize(&a).map_err(anyhow::Error::from),
        Command::Imatrix(a) => mote_compress::cli::run_imatrix(&a).map_err(anyhow::Error::from),
        Command::Prune(a) => mote_compress::cli::run_prune(&a).map_err(anyhow::Error::from),
        Command::Finetune(a) => mote_train::cli::run_finetune(&a).map_err(anyhow::Error::from),
        Command::Distill(a) => mote_train::cli::run_distill(&a).map_err(anyhow::Error::from),
        Command::Export(a) => mote_convert::cli::run_export(&a).map_err(anyhow::Error::from),
        Command::Gateway(a) => mote_gateway::run(a).map_err(anyhow::Error::from),
    };
    if let Err(e) = result {
        // One line: the error and its causes, joined.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Logs go to stderr so that stdout carries only generated text or JSON.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
