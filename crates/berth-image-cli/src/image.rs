//! `berth image`: pull, load, list, inspect, remove, unpack and prune images.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use berth_image::archive::{self, LoadOptions};
use berth_image::bundle::{self, BundleOptions};
use berth_image::{Platform, Reference, Store};

use crate::progress::{PullView, UnpackBar};

/// A write to stdout failed: `BrokenPipe` when the reader went away (`berth image ls | head
/// -1`), `StorageFull` for a full disk. `main` ends quietly on the first and reports the rest.
#[derive(Debug)]
pub struct StdoutError(pub std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("write to stdout")
    }
}

impl std::error::Error for StdoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// `println!` that returns the write's failure instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut o = std::io::stdout().lock();
        writeln!(o, $($arg)*).and_then(|()| o.flush()).map_err(StdoutError)
    }};
}

/// Arguments of `berth image`.
#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// Image store root.
    #[arg(long, global = true, env = "BERTH_IMAGE_ROOT", default_value = berth_image::store::DEFAULT_ROOT)]
    pub image_root: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `berth image` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from a registry.
    Pull {
        /// Image reference, e.g. `busybox` or `127.0.0.1:5000/app:1`.
        reference: String,
        /// Use plain http (implied for loopback registries).
        #[arg(long)]
        insecure: bool,
        /// Platform `os/arch[/variant]` to pick from an index.
        #[arg(long)]
        platform: Option<String>,
        /// Only store the blobs; skip unpacking the layers while they download.
        #[arg(long)]
        no_unpack: bool,
        /// No progress output; print only the pulled reference pinned to its digest
        /// (`NAME:TAG@sha256:...`).
        #[arg(short, long)]
        quiet: bool,
    },
    /// List images.
    Ls,
    /// Print an image's manifest and config as JSON.
    Inspect {
        /// Image reference or digest.
        reference: String,
    },
    /// Remove an image reference (blobs go with `prune`).
    Rm {
        /// Image reference or digest.
        reference: String,
    },
    /// Load a docker-archive or OCI layout (tar file, `-` for stdin, or layout directory).
    Load {
        /// Archive path or `-`.
        file: String,
        /// Repository name for OCI layouts whose refs are bare tags.
        #[arg(long)]
        name: Option<String>,
        /// Platform `os/arch[/variant]` to pick from an index.
        #[arg(long)]
        platform: Option<String>,
    },
    /// Create an OCI bundle (rootfs + config.json) from an image.
    Unpack {
        /// Image reference or digest.
        reference: String,
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// Mount the rootfs as overlayfs over the stored layers.
        #[arg(long, conflicts_with = "flatten")]
        overlay: bool,
        /// Copy the layers into a real rootfs directory (the default).
        #[arg(long)]
        flatten: bool,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Undo `unpack --overlay`.
    Unmount {
        /// Bundle directory.
        bundle: PathBuf,
    },
    /// Remove blobs and layers no image uses.
    Prune,
}

fn platform(p: Option<String>) -> anyhow::Result<Platform> {
    Ok(match p {
        Some(p) => p.parse()?,
        None => Platform::host(),
    })
}

/// Run `berth image`; returns the exit code.
pub fn run(args: ImageArgs) -> anyhow::Result<i32> {
    let store = Store::open(&args.image_root)?;
    match args.command {
        ImageCommand::Pull {
            reference,
            insecure,
            platform: p,
            no_unpack,
            quiet,
        } => {
            let r: Reference = reference.parse()?;
            let opts = berth_image::registry::PullOptions {
                insecure,
                platform: p.map(|p| p.parse()).transpose()?,
                auth: None,
                no_unpack,
            };
            let view = PullView::new(quiet);
            view.line(&format!(
                "{}: Pulling from {}",
                r.tag.as_deref().unwrap_or("latest"),
                r.repository
            ));
            // The CLI has no runtime of its own: the blocking wrapper runs one for the pull.
            let pulled =
                berth_image::registry::pull_blocking(&store, &r, &opts, &|e| view.event(e));
            view.finish();
            let img = pulled.with_context(|| format!("pulling {r}"))?;
            let pinned = Reference {
                digest: Some(img.manifest_digest.clone()),
                ..r.clone()
            };
            if quiet {
                out!("{pinned}")?;
            } else {
                // As docker prints it, the reference last.
                out!("Digest: {}", img.manifest_digest)?;
                if view.changed() {
                    out!("Status: Downloaded newer image for {}", r.familiar())?;
                } else {
                    out!("Status: Image is up to date for {}", r.familiar())?;
                }
                out!("{r}")?;
            }
        }
        ImageCommand::Ls => {
            out!("{:<50} {:<20} {:>10}", "REFERENCE", "MANIFEST", "SIZE")?;
            for (name, d) in store.refs()? {
                let size = store
                    .image(&d)
                    .ok()
                    .and_then(|i| i.layers().ok())
                    .map_or(0, |ls| ls.iter().map(|l| l.size).sum::<u64>());
                let shown = name
                    .parse::<Reference>()
                    .map(|r| r.familiar())
                    .unwrap_or(name);
                out!(
                    "{:<50} {:<20} {:>9.1}M",
                    shown,
                    &d.hex()[..12],
                    size as f64 / 1_048_576.0
                )?;
            }
        }
        ImageCommand::Inspect { reference } => {
            let (name, d) = store.resolve(&reference)?;
            let img = store.image(&d)?;
            let out = serde_json::json!({
                "reference": name,
                "manifestDigest": img.manifest_digest,
                "configDigest": img.config_digest,
                "manifest": img.manifest,
                "config": img.config,
            });
            out!("{}", serde_json::to_string_pretty(&out)?)?;
        }
        ImageCommand::Rm { reference } => {
            if !store.remove_ref(&reference)? {
                anyhow::bail!("no image {reference}");
            }
        }
        ImageCommand::Load {
            file,
            name,
            platform: p,
        } => {
            let opts = LoadOptions {
                platform: platform(p)?,
                name,
            };
            let loaded = if file == "-" {
                archive::load_tar(&store, std::io::stdin().lock(), &opts)?
            } else {
                archive::load_path(&store, file.as_ref(), &opts)
                    .with_context(|| format!("loading {file}"))?
            };
            for img in loaded {
                if img.names.is_empty() {
                    out!("Loaded image {}", img.manifest)?;
                }
                for n in img.names {
                    out!("Loaded image {n}")?;
                }
            }
        }
        ImageCommand::Unpack {
            reference,
            bundle,
            overlay,
            flatten: _,
            quiet,
        } => {
            let (_, d) = store.resolve(&reference)?;
            let img = store.image(&d)?;
            let bar = UnpackBar::new(quiet);
            let opts = BundleOptions {
                overlay,
                ..Default::default()
            };
            let res = bundle::create_bundle(&store, &img, &bundle, &opts, &|e| bar.event(e));
            bar.finish();
            res.with_context(|| format!("unpacking {reference} into {}", bundle.display()))?;
        }
        ImageCommand::Unmount { bundle } => bundle::remove_bundle_mount(&bundle)?,
        ImageCommand::Prune => {
            let s = store.prune()?;
            out!(
                "removed {} blobs ({:.1} MiB), {} layers",
                s.blobs,
                s.bytes as f64 / 1_048_576.0,
                s.layers
            )?;
        }
    }
    Ok(0)
}
