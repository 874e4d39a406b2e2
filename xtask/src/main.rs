//! `cargo xtask fetch`: downloads Keras's published MobileNetV2 weights and converts them to the
//! `<layer>/<variable>.npy` layout the project loads, and downloads the sports photos. Resumable,
//! hash-checked, atomic: nothing half-written is ever taken for complete.

mod convert;
mod download;
mod fetch;
mod sums;
mod unzip;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "Project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Download and convert the weights and the data (both, unless one is named).
    Fetch(FetchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct FetchArgs {
    #[command(subcommand)]
    what: Option<What>,
    /// Project root holding weights/ and data/.
    #[arg(long, global = true, default_value = ".")]
    root: PathBuf,
    /// No progress bars.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum What {
    /// Keras's MobileNetV2 ImageNet weights (.h5), converted to .npy trees, and the ImageNet class index.
    Weights(fetch::WeightsArgs),
    /// The "100 Sports Image Classification" photos, the chosen classes kept in data/sports.
    Data(fetch::DataArgs),
}

/// A subcommand's arguments as clap fills them when none are given: defaults and environment variables.
fn defaults<T: clap::FromArgMatches + Args>(name: &'static str) -> T {
    let matches = T::augment_args(clap::Command::new(name)).get_matches_from([name]);
    T::from_arg_matches(&matches).expect("defaults parse")
}

fn main() {
    let cli = Cli::parse();
    let Cmd::Fetch(args) = cli.cmd;
    let result = match &args.what {
        Some(What::Weights(w)) => fetch::weights(&args.root, w, args.quiet),
        Some(What::Data(d)) => fetch::data(&args.root, d, args.quiet),
        None => fetch::weights(
            &args.root,
            &defaults::<fetch::WeightsArgs>("weights"),
            args.quiet,
        )
        .and_then(|_| fetch::data(&args.root, &defaults::<fetch::DataArgs>("data"), args.quiet)),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        for c in e.chain().skip(1) {
            eprintln!("  caused by: {c}");
        }
        std::process::exit(2);
    }
}
