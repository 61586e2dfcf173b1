//! Compilation of conf.yaml's `dashboard`: the running dashboard (and its
//! history) when its settings did not change, else a new one.

use std::sync::Arc;

use super::compile::{Compiler, Parsed};
use super::file::MainFile;
use crate::dashboard::Dashboard;

/// The most `max_routes` a config may ask for.
const MAX_ROUTES: u64 = 10_000;

impl Compiler<'_> {
    /// The dashboard of the config in `main`, `None` when it is off or
    /// there is no admin service to show it.
    pub(super) fn dashboard(&mut self, main: &Parsed<MainFile>) -> Option<Arc<Dashboard>> {
        let d = &main.content.dashboard;
        self.bounded(
            main,
            "dashboard.max_routes",
            d.max_routes as u64,
            1,
            MAX_ROUTES,
        );
        if !d.enabled || main.content.admin.is_none() {
            return None;
        }
        if let Some(running) = self
            .previous
            .and_then(|p| p.dashboard.as_ref())
            .filter(|running| running.max_routes() == d.max_routes)
        {
            return Some(Arc::clone(running));
        }
        Some(Arc::new(Dashboard::new(d.max_routes)))
    }
}
