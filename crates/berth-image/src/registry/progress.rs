//! What a pull reports while it runs: one [`PullEvent::Resolved`] once the manifest and config
//! are known, then [`PullEvent::Layer`] events that follow each layer through
//! [`LayerState`]s, shaped so that a terminal progress bar and the Docker Engine API's JSON
//! progress stream (`{"status":"Downloading","progressDetail":{"current":N,"total":M},
//! "id":"<short digest>"}`) can both be drawn from them without keeping more state than a map
//! from digest to the last event.

use std::sync::Mutex;

use crate::digest::Digest;

/// Where one layer of a pull is.
///
/// Each layer starts [`LayerState::Waiting`] and moves forward only, in declaration order,
/// skipping states that do not apply; it ends in exactly one of [`LayerState::Done`] and
/// [`LayerState::AlreadyExists`] unless the pull fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum LayerState {
    /// Known, not started (downloads run a few at a time).
    Waiting,
    /// Bytes are arriving; when the pull unpacks, they are extracted into the layer store as
    /// they arrive, so a streamed layer never shows [`LayerState::Extracting`].
    Downloading,
    /// Every byte is in; the digest (and, when unpacking, the diff id) is being checked and
    /// the blob and layer directory moved into place.
    Verifying,
    /// The blob was already stored but not unpacked: it is being extracted from the store.
    /// `current` counts blob bytes read by the extractor.
    Extracting,
    /// The layer is in the store (and unpacked unless [`super::PullOptions::no_unpack`]).
    Done,
    /// Nothing to do: the blob (and its unpacked directory, when unpacking) was already there.
    AlreadyExists,
}

impl LayerState {
    /// Whether the layer has finished (no later event for it).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::AlreadyExists)
    }

    /// The `status` word docker's pull progress stream uses for this state (`"Waiting"`,
    /// `"Downloading"`, `"Verifying Checksum"`, `"Extracting"`, `"Pull complete"`,
    /// `"Already exists"`).
    pub fn docker_status(self) -> &'static str {
        match self {
            Self::Waiting => "Waiting",
            Self::Downloading => "Downloading",
            Self::Verifying => "Verifying Checksum",
            Self::Extracting => "Extracting",
            Self::Done => "Pull complete",
            Self::AlreadyExists => "Already exists",
        }
    }
}

/// One layer's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    /// The layer blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes, as its descriptor declares.
    pub total: u64,
    /// Bytes of the blob downloaded (or, in [`LayerState::Extracting`], read by the
    /// extractor) so far; never decreases for a layer, never exceeds `total`, and equals
    /// `total` in [`LayerState::Verifying`], [`LayerState::Done`] and
    /// [`LayerState::AlreadyExists`].
    pub current: u64,
    /// Where the layer is.
    pub state: LayerState,
}

impl LayerProgress {
    /// The first 12 hex digits of the digest: the `id` docker's progress stream shows.
    pub fn short_id(&self) -> &str {
        let hex = self.digest.hex();
        &hex[..hex.len().min(12)]
    }
}

/// A progress report from [`super::pull`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullEvent {
    /// The manifest and config are in: the layers that follow, bottom first, as
    /// (digest, size in bytes). Comes once, before any [`PullEvent::Layer`].
    Resolved {
        /// The image manifest's digest (the platform's manifest when the reference named an
        /// index).
        manifest: Digest,
        /// The layers as (blob digest, size in bytes).
        layers: Vec<(Digest, u64)>,
    },
    /// A layer moved: a new state or more bytes. Downloads are reported at most every
    /// [`REPORT_EVERY`] bytes of a layer, and always at its last byte.
    Layer(LayerProgress),
}

/// Bytes of a layer between two [`LayerState::Downloading`] or [`LayerState::Extracting`]
/// events (fewer events keep a daemon's JSON stream and a terminal cheap).
pub const REPORT_EVERY: u64 = 256 << 10;

/// A progress sink: called from the pull's task and from its blocking threads, possibly at the
/// same time for different layers (one layer's events come in order). `&|_| {}` ignores
/// everything; to feed a channel, send from the closure (an unbounded
/// `tokio::sync::mpsc::UnboundedSender` or `std::sync::mpsc::Sender` never blocks the pull).
pub type PullProgress<'a> = &'a (dyn Fn(PullEvent) + Send + Sync);

/// Reports one layer: remembers where it is so events stay monotonic and sparse.
pub(super) struct LayerReporter<'a> {
    sink: PullProgress<'a>,
    digest: Digest,
    total: u64,
    /// (state, current, current at the last event).
    at: Mutex<(LayerState, u64, u64)>,
}

impl<'a> LayerReporter<'a> {
    pub fn new(sink: PullProgress<'a>, digest: Digest, total: u64) -> Self {
        Self {
            sink,
            digest,
            total,
            at: Mutex::new((LayerState::Waiting, 0, 0)),
        }
    }

    fn emit(&self, state: LayerState, current: u64) {
        (self.sink)(PullEvent::Layer(LayerProgress {
            digest: self.digest.clone(),
            total: self.total,
            current,
            state,
        }));
    }

    /// Announce the layer as waiting.
    pub fn waiting(&self) {
        self.emit(LayerState::Waiting, 0);
    }

    /// Move to `state` (forward only) with `current` bytes; `current` never goes backwards.
    pub fn set(&self, state: LayerState, current: u64) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        if state < at.0 || at.0.is_final() {
            return;
        }
        let current = current.max(at.1);
        *at = (state, current, current);
        drop(at);
        self.emit(state, current);
    }

    /// `n` more bytes in the current state (downloading or extracting); reports every
    /// [`REPORT_EVERY`] bytes and at the last byte.
    pub fn advance(&self, state: LayerState, n: u64) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        if state < at.0 || at.0.is_final() {
            return;
        }
        // Not capped at `total`: the download refuses bytes past the declared size, and a
        // count that passed it would be a bug worth seeing.
        let current = at.1 + n;
        let changed = state != at.0;
        at.0 = state;
        at.1 = current;
        if changed || current - at.2 >= REPORT_EVERY || (current >= self.total && at.2 < current) {
            at.2 = current;
            drop(at);
            self.emit(state, current);
        }
    }

    /// Finish the layer in `state` ([`LayerState::Done`] or [`LayerState::AlreadyExists`]).
    pub fn finish(&self, state: LayerState) {
        self.set(state, self.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_is_sparse_monotonic_and_final() {
        let events = Mutex::new(Vec::new());
        let sink = |e: PullEvent| events.lock().unwrap().push(e);
        let d = Digest::of(b"layer");
        let r = LayerReporter::new(&sink, d.clone(), 3 * REPORT_EVERY);
        r.waiting();
        for _ in 0..3 * 64 {
            r.advance(LayerState::Downloading, REPORT_EVERY / 64);
        }
        r.set(LayerState::Verifying, 0);
        r.advance(LayerState::Downloading, 5);
        r.finish(LayerState::Done);
        r.set(LayerState::Downloading, 1);
        let got: Vec<(LayerState, u64)> = events
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|e| match e {
                PullEvent::Layer(l) => (l.state, l.current),
                other => panic!("{other:?}"),
            })
            .collect();
        let s = REPORT_EVERY / 64;
        assert_eq!(
            got,
            vec![
                (LayerState::Waiting, 0),
                (LayerState::Downloading, s),
                (LayerState::Downloading, s + REPORT_EVERY),
                (LayerState::Downloading, s + 2 * REPORT_EVERY),
                (LayerState::Downloading, 3 * REPORT_EVERY),
                (LayerState::Verifying, 3 * REPORT_EVERY),
                (LayerState::Done, 3 * REPORT_EVERY),
            ]
        );
        assert_eq!(LayerState::Verifying.docker_status(), "Verifying Checksum");
        let p = LayerProgress {
            digest: d.clone(),
            total: 1,
            current: 1,
            state: LayerState::Done,
        };
        assert_eq!(p.short_id(), &d.hex()[..12]);
    }
}
