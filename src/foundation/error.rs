//! The error a user can act on: a message naming the flag, file or field at fault, and the exit
//! status the process ends with (2 for bad input, as the brief requires).
//!
//! Everything before the run (flags, dataset, endpoint, results folder) reports through
//! [`UserError`]; `main` prints it and exits, never panicking.

use std::fmt;

/// The process's exit statuses (docs/commands.md, "Exit statuses", lists them for users).
pub mod exit {
    /// The run measured what it was asked to.
    pub const OK: i32 = 0;
    /// qpsbench itself failed (a core thread stopped, a runtime could not be built).
    pub const RUNTIME: i32 = 1;
    /// Bad input: a flag, a file or a field; nothing was sent.
    pub const INPUT: i32 = 2;
    /// Every level was client-limited: the numbers measure this machine, not the endpoint.
    pub const CLIENT_LIMITED: i32 = 3;
    /// The endpoint did not answer: its check before level 1 failed, or no level had a single
    /// success. No capacity is claimed.
    pub const ENDPOINT: i32 = 4;
    /// Interrupted (Ctrl-C, SIGTERM): the levels measured so far are saved.
    pub const INTERRUPTED: i32 = 130;
}

/// A failure caused by the user's input or environment, printed as `error: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    pub message: String,
    pub exit_code: i32,
}

impl UserError {
    /// Bad input: exit status 2.
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: exit::INPUT,
        }
    }

    /// The endpoint failed its check before the first level: exit status 4.
    pub fn endpoint(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: exit::ENDPOINT,
        }
    }

    /// A failure while running (a core thread stopped, a runtime could not be built): exit
    /// status 1.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: exit::RUNTIME,
        }
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

pub type Result<T> = std::result::Result<T, UserError>;
