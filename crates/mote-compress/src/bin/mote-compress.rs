//! `mote-compress`: the compression commands without the rest of `mote`, for scripts.

use clap::{Parser, Subcommand};
use mote_compress::cli;

#[derive(Parser)]
#[command(
    name = "mote-compress",
    about = "Quantize models and measure the damage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Perplexity(cli::PerplexityArgs),
    Quantize(cli::QuantizeArgs),
    Imatrix(cli::ImatrixArgs),
    Prune(cli::PruneArgs),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Perplexity(a) => cli::run_perplexity(&a),
        Command::Quantize(a) => cli::run_quantize(&a),
        Command::Imatrix(a) => cli::run_imatrix(&a),
        Command::Prune(a) => cli::run_prune(&a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
