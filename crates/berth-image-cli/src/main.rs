//! `berth-image`: pull, load, inspect and unpack images. `berth image ARGS` runs this binary,
//! so that the registry client (tokio, rustls) never weighs on the runtime commands' start-up.

mod image;

use clap::Parser;

/// The image store's command line.
#[derive(Parser)]
#[command(name = "berth image", version)]
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
