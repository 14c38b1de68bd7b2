//! Which instances of a run's record changed since the journal's last
//! commit, known without comparing or serialising the others.

/// Which instances were handed out for change since a point in time:
/// `RunRecord::instance_mut` stamps the instance with a clock, and the
/// journal writes the instances stamped since its last commit — without
/// comparing or serialising the others. Not part of the record's JSON, and
/// ignored by its equality.
#[derive(Debug, Clone, Default)]
pub struct Touched {
    clock: u64,
    /// Per instance index, the clock when it was last handed out.
    at: Vec<u64>,
}

impl PartialEq for Touched {
    fn eq(&self, _: &Touched) -> bool {
        true
    }
}

impl Touched {
    pub(crate) fn mark(&mut self, index: usize) {
        self.clock += 1;
        if self.at.len() <= index {
            self.at.resize(index + 1, 0);
        }
        self.at[index] = self.clock;
    }

    /// The clock now: instances marked later are newer than this.
    pub(crate) fn clock(&self) -> u64 {
        self.clock
    }

    /// Indices marked after `since`, in order.
    pub(crate) fn since(&self, since: u64) -> impl Iterator<Item = usize> + '_ {
        self.at
            .iter()
            .enumerate()
            .filter(move |(_, &at)| at > since)
            .map(|(i, _)| i)
    }
}
