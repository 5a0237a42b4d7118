//! OCI image store and unpacker: pull from registries, load OCI layouts and docker-archive
//! tarballs, verify every blob, unpack layers safely (per-layer directories for overlayfs or a
//! flattened rootfs) and generate runtime bundles.
//!
//! ```no_run
//! use berth_image::{Store, bundle::{create_bundle, BundleOptions}};
//! let store = Store::open("/var/lib/berth")?;
//! let (_, manifest) = store.resolve("busybox")?;
//! let img = store.image(&manifest)?;
//! create_bundle(&store, &img, "/tmp/bundle".as_ref(), &BundleOptions::default(), &|_| {})?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod archive;
pub mod bundle;
pub mod default_spec;
pub mod digest;
pub mod image;
pub mod layer;
pub mod platform;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use image::{Image, Platform};
pub use reference::Reference;
#[cfg(feature = "registry")]
pub use registry::{LayerProgress, LayerState, PullEvent};
pub use store::{Store, StoreError};
pub use unpack::{Progress, ProgressEvent, UnpackError};
