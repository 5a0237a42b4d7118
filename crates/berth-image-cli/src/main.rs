//! `berth-image`: pull, load, inspect and unpack images. `berth image ARGS` runs this binary,
//! so that the registry client (tokio, rustls) never weighs on the runtime commands' start-up.

mod image;
mod progress;

use std::io::Write;

use clap::Parser;

/// The image store's command line.
#[derive(Parser)]
#[command(name = "berth image", version)]
struct Cli {
    #[command(flatten)]
    args: image::ImageArgs,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version to stdout, usage errors to stderr, failures not ignored.
            let text = e.render().to_string();
            let code = e.exit_code();
            if e.use_stderr() {
                let _ = write!(std::io::stderr().lock(), "{text}");
                std::process::exit(code);
            }
            let mut o = std::io::stdout().lock();
            match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
                Ok(()) => std::process::exit(code),
                Err(e) => fail(&anyhow::Error::new(image::StdoutError(e))),
            }
        }
    };
    match image::run(cli.args) {
        Ok(code) => std::process::exit(code),
        Err(e) => fail(&e),
    }
}

/// End with `e`: quietly with 141 (as a tool killed by SIGPIPE) when stdout's reader went
/// away, else with its message on stderr and 1.
fn fail(e: &anyhow::Error) -> ! {
    let closed = e
        .chain()
        .filter_map(|c| c.downcast_ref::<image::StdoutError>())
        .any(|o| o.0.kind() == std::io::ErrorKind::BrokenPipe);
    if closed {
        std::process::exit(128 + 13);
    }
    let _ = writeln!(std::io::stderr().lock(), "berth image: {e:#}");
    std::process::exit(1);
}
