//! Compilation of conf.yaml's `dashboard`: the running dashboard (and its
//! history) when its settings did not change, else a new one.

use std::sync::Arc;

use super::compile::{Compiler, Parsed};
use super::file::MainFile;
use crate::dashboard::Dashboard;

/// The most `max_routes` a config may ask for.
const MAX_ROUTES: usize = 10_000;

impl Compiler<'_> {
    /// The dashboard of the config in `main`, `None` when it is off or
    /// there is no admin service to show it.
    pub(super) fn dashboard(&mut self, main: &Parsed<MainFile>) -> Option<Arc<Dashboard>> {
        let d = &main.content.dashboard;
        if d.max_routes == 0 || d.max_routes > MAX_ROUTES {
            self.errors.push(main.err(
                "dashboard.max_routes",
                format!("must be between 1 and {MAX_ROUTES}"),
            ));
        }
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
