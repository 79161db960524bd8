//! What a long computation tells its caller as it goes: the work in all, then each step's
//! share of it. The CLI draws a bar from it; a library caller may ignore it (`&mut |_| {}`).

/// One report. The unit is the computation's own (tokens for `memorize` and `benchmark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The work in all; sent once, before any step.
    Total(u64),
    /// Work finished since the last report.
    Done(u64),
}

/// Where a computation sends its [`Progress`].
pub type OnProgress<'a> = &'a mut dyn FnMut(Progress);
