//! The views of the live interface, in tab order.

/// The views, in tab order (keys `1`..`5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    /// Every task, as a table.
    Tasks,
    /// Everything about the selected task.
    Detail,
    /// Slow polls grouped by spawn location.
    SlowPolls,
    /// Never-awaited futures, leaked and lost tasks, panics, dropped counts.
    Problems,
    /// Runtime metrics: workers, queues, blocking pool.
    Runtime,
}

impl View {
    /// Every view, in tab order.
    pub const ALL: [View; 5] = [
        View::Tasks,
        View::Detail,
        View::SlowPolls,
        View::Problems,
        View::Runtime,
    ];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            View::Tasks => "Tasks",
            View::Detail => "Detail",
            View::SlowPolls => "Slow polls",
            View::Problems => "Problems",
            View::Runtime => "Runtime",
        }
    }

    /// Position in the tab bar, from 0.
    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// The next view in tab order (wrapping).
    pub fn next(self) -> View {
        View::ALL[(self.index() + 1) % View::ALL.len()]
    }

    /// The previous view in tab order (wrapping).
    pub fn prev(self) -> View {
        View::ALL[(self.index() + View::ALL.len() - 1) % View::ALL.len()]
    }
}
