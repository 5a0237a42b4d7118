//! Docker events: published to `/events` subscribers and kept for `since`.

use super::{Daemon, EVENT_HISTORY};
use crate::store::Record;
use crate::util;

impl Daemon {
    /// Publish a container event (`create`, `start`, `die`, `destroy`, ...).
    pub fn event(&self, id: &str, action: &str, extra: &[(&str, String)]) {
        let rec = self
            .containers
            .read()
            .expect("containers lock")
            .get(id)
            .map(|e| e.record());
        self.event_of(id, rec.as_ref(), action, extra)
    }

    /// [`event`](Self::event) with the record given (for a container no longer listed).
    pub(super) fn event_of(
        &self,
        id: &str,
        rec: Option<&Record>,
        action: &str,
        extra: &[(&str, String)],
    ) {
        let mut attrs = serde_json::Map::new();
        if let Some(r) = &rec {
            attrs.insert("name".into(), r.name.clone().into());
            attrs.insert(
                "image".into(),
                r.config.image.clone().unwrap_or_default().into(),
            );
            for (k, v) in r.config.labels.clone().unwrap_or_default() {
                attrs.insert(k, v.into());
            }
        }
        for (k, v) in extra {
            attrs.insert((*k).to_owned(), v.clone().into());
        }
        let nanos = util::now_nanos();
        let ev = serde_json::json!({
            "status": action,
            "id": id,
            "from": rec.and_then(|r| r.config.image.clone()).unwrap_or_default(),
            "Type": "container",
            "Action": action,
            "Actor": {"ID": id, "Attributes": attrs},
            "scope": "local",
            "time": (nanos / 1_000_000_000) as i64,
            "timeNano": nanos as i64,
        });
        self.publish(ev);
    }

    /// Send an event to the subscribers and keep it in the history.
    pub fn publish(&self, ev: serde_json::Value) {
        {
            let mut log = self.event_log.lock().expect("event log lock");
            if log.len() >= EVENT_HISTORY {
                log.pop_front();
            }
            log.push_back(ev.clone());
        }
        let _ = self.events.send(ev);
    }

    /// Publish a volume event.
    pub fn volume_event(&self, name: &str, action: &str) {
        let nanos = util::now_nanos();
        self.publish(serde_json::json!({
            "Type": "volume", "Action": action,
            "Actor": {"ID": name, "Attributes": {"driver": "local"}},
            "scope": "local", "time": (nanos / 1_000_000_000) as i64, "timeNano": nanos as i64,
        }));
    }
}
