//! `app`: the command a user runs. `train` fine-tunes MobileNetV2 on an image folder, `eval` scores a
//! run, `predict` labels images (with a run's classes or ImageNet's), `activations` dumps layer outputs.

mod activations;
mod class_weight;
mod cli;
mod config;
mod evaluate;
mod explain;
mod export;
mod fit;
mod gallery;
mod history;
mod load;
mod lr_find;
mod memory;
mod metrics;
mod pipe;
mod plots;
mod predict;
mod quantize;
mod report;
mod scoring;
mod serve;
mod summary;
mod train;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    match try_main(args) {
        Ok(code) => std::process::exit(code),
        Err(e) if pipe::is_closed_pipe(&e) => std::process::exit(0),
        Err(e) => {
            eprint!("{}", error_report(&e));
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
        cli::Command::Train(t) => {
            // Training frees and reallocates the same buffers every step: keep them instead of
            // refaulting. Not for predict, whose memory must stay flat over any number of batches.
            tensor_core::buffer::retain_freed_memory();
            train::run(*t)
        }
        cli::Command::Eval(e) => evaluate::run(e),
        cli::Command::Predict(p) => predict::run(p),
        cli::Command::Activations(a) => activations::run(a),
        cli::Command::Export(x) => export::run(x),
        cli::Command::Explain(x) => explain::run(x),
        cli::Command::Serve(s) => serve::run(s),
        cli::Command::Quantize(q) => quantize::run(q),
        cli::Command::Summary(s) => summary::run(s),
        cli::Command::LrFind(a) => lr_find::run(*a),
    }
}

/// `error: ...` then each cause that adds something: a cause whose text is already part of what
/// was printed (libraries often repeat their source in their own message) is left out.
fn error_report(e: &anyhow::Error) -> String {
    let mut said = e.to_string();
    let mut out = format!("error: {said}\n");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if said.contains(&c) {
            continue;
        }
        out.push_str(&format!("  caused by: {c}\n"));
        said.push_str(&c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_report;
    use anyhow::Context;

    #[test]
    fn repeated_causes_are_printed_once() {
        let io = std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "Is a directory (os error 21)",
        );
        let e = Err::<(), _>(io)
            .context("x.jpg: Is a directory (os error 21)")
            .context("reading x.jpg")
            .unwrap_err();
        assert_eq!(
            error_report(&e),
            "error: reading x.jpg\n  caused by: x.jpg: Is a directory (os error 21)\n"
        );
    }
}
