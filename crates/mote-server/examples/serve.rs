//! `cargo run --release -p mote-server --example serve -- serve MODEL [flags]`: the server
//! without the rest of the CLI, handy while working on this crate.

use clap::Parser;

#[derive(Parser)]
enum Cli {
    /// Serve a model over HTTP.
    Serve(mote_server::ServeArgs),
}

fn main() {
    let Cli::Serve(args) = Cli::parse();
    if let Err(e) = mote_server::run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
