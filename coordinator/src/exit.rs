//! What the exit status of a run's commands (`local`, `demo`, `watch`) says, for scripts and
//! Kubernetes Jobs that chain `submit`, `watch` and `report`:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every cell of the run is done |
//! | 1 | the command could not run (bad input, a service unreachable, storage errors); the message says what to fix |
//! | 2 | the command line is wrong (clap's usage error) |
//! | 3 | the run finished, but some cells failed for good (the reasons are printed, grouped) |
//! | 4 | the run finished and every cell failed: most likely its set-up (dataset, model, permissions) |
//! | 5 | `preflight` warned: the model ignores its input or scores below the floor |
//! | 130 | interrupted (Ctrl-C) before the run finished |

/// The exit codes as `--help` of `demo`, `local` and `watch` lists them (the table above).
pub const HELP: &str = "\
Exit status: 0 every cell of the run is done; 1 the command could not run (the message says what
to fix); 2 a wrong command line; 3 the run finished but some cells failed for good (reasons printed,
grouped); 4 every cell failed (most likely the run's set-up: dataset, model, permissions); 130
interrupted before the run finished.";

/// The exit code when some cells failed for good.
pub const SOME_CELLS_FAILED: u8 = 3;
/// The exit code when every cell failed.
pub const ALL_CELLS_FAILED: u8 = 4;
/// The exit code of `preflight` when it warns (the model ignores its input or scores below the
/// floor): a launch script stops there.
pub const PREFLIGHT_WARNED: u8 = 5;
/// The exit code of a command interrupted before its run finished (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// A run that ended without every cell done: returned as an error by the commands, so that
/// `main` exits with its own code after the command printed its summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfinished {
    #[error("{failed} of {total} cells failed for good (their reasons are above); exit code 3")]
    SomeFailed { failed: usize, total: usize },
    #[error(
        "every one of the {total} cells failed (their reasons are above): that is most likely the run's set-up, not its \
         cells; exit code 4"
    )]
    AllFailed { total: usize },
    #[error("stopped before the run finished: {remaining} of {total} cells remaining")]
    Interrupted { remaining: usize, total: usize },
}

impl Unfinished {
    /// `None` when every cell is done; otherwise how the finished run failed. Cells neither done
    /// nor failed count as failed here: callers ask once the run is over.
    pub fn of(done: usize, total: usize) -> Option<Self> {
        if done >= total {
            None
        } else if done == 0 {
            Some(Self::AllFailed { total })
        } else {
            Some(Self::SomeFailed { failed: total - done, total })
        }
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Self::SomeFailed { .. } => SOME_CELLS_FAILED,
            Self::AllFailed { .. } => ALL_CELLS_FAILED,
            Self::Interrupted { .. } => INTERRUPTED,
        }
    }

    /// The exit code `err` asks for: its [`Unfinished`]'s, or 1.
    pub fn code_of(err: &anyhow::Error) -> u8 {
        err.downcast_ref::<Self>().map_or(1, Self::code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_tell_all_done_some_failed_and_all_failed_apart() {
        assert_eq!(Unfinished::of(5, 5), None);
        assert_eq!(Unfinished::of(3, 5).map(|u| u.code()), Some(3));
        assert_eq!(Unfinished::of(0, 5).map(|u| u.code()), Some(4));
        assert_eq!(Unfinished::code_of(&anyhow::anyhow!("no broker")), 1);
        assert_eq!(Unfinished::code_of(&anyhow::Error::new(Unfinished::AllFailed { total: 2 })), 4);
    }
}
