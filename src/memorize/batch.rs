//! A batch of rows split into prompt and true suffix: the input that the engine scores and
//! the logit lens reads its targets from. A module of its own so that both can use it
//! without depending on each other.

/// A batch of rows split into prompt and true suffix.
pub struct Batch<'a> {
    /// Row-major token ids, `rows × seq_len`.
    pub ids: &'a [u32],
    pub rows: usize,
    pub seq_len: usize,
    pub prefix_len: usize,
}

impl Batch<'_> {
    pub(super) fn suffix_len(&self) -> usize {
        self.seq_len - self.prefix_len
    }

    pub(super) fn suffix(&self, row: usize) -> &[u32] {
        &self.ids[row * self.seq_len + self.prefix_len..(row + 1) * self.seq_len]
    }
}
