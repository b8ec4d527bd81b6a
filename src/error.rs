//! The error a user can act on: a message naming the flag, file or field at fault, and the exit
//! status the process ends with (2 for bad input, as the brief requires).
//!
//! Everything before the run (flags, dataset, endpoint, results folder) reports through
//! [`UserError`]; `main` prints it and exits, never panicking.

use std::fmt;

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
            exit_code: 2,
        }
    }

    /// A failure while running (a core thread stopped, a runtime could not be built): exit
    /// status 1.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: 1,
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
