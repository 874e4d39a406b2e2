//! `app`: the command a user runs. `train` fine-tunes MobileNetV2 on an image folder, `eval` scores a
//! run, `predict` labels images (with a run's classes or ImageNet's), `activations` dumps layer outputs.

mod activations;
mod cli;
mod config;
mod evaluate;
mod history;
mod load;
mod metrics;
mod plots;
mod predict;
mod report;
mod train;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    // Training frees and reallocates the same buffers every step: keep them instead of refaulting.
    tensor_core::buffer::retain_freed_memory();
    match try_main(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::exit(2);
        }
    }
}

fn try_main(args: cli::Cli) -> anyhow::Result<i32> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    match args.command {
        cli::Command::Train(t) => train::run(t),
        cli::Command::Eval(e) => evaluate::run(e),
        cli::Command::Predict(p) => predict::run(p),
        cli::Command::Activations(a) => activations::run(a),
    }
}
