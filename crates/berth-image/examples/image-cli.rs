//! `berth image` as a standalone binary, built from the CLI's own command file, so that the
//! benchmark and tests can drive the real command line without building the whole CLI.

#[path = "../../berth-image-cli/src/image.rs"]
mod image;

use clap::Parser;

#[derive(Parser)]
#[command(name = "berth-image")]
struct Cli {
    #[command(flatten)]
    args: image::ImageArgs,
}

fn main() {
    let cli = Cli::parse();
    match image::run(cli.args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("berth image: {e:#}");
            std::process::exit(1);
        }
    }
}
