//! Config errors: each names the file, the line and column, and what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// A line and column in a config file, both counted from 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file it is in; `None` while the error is still being attached to one.
    pub file: Option<PathBuf>,
    /// Where in the file.
    pub pos: Position,
    /// What is wrong, naming the key.
    pub message: String,
}

impl ConfigError {
    /// An error at `pos` of a file not yet named.
    pub fn at(pos: Position, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            pos,
            message: message.into(),
        }
    }

    /// An error about a whole file (it cannot be read, for example).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: Some(file.to_path_buf()),
            pos: Position::default(),
            message: message.into(),
        }
    }

    /// Names the file this error is in.
    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
        }
        if self.pos.line > 0 {
            write!(f, "{}:{}: ", self.pos.line, self.pos.col)?;
        } else if self.file.is_some() {
            write!(f, " ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in one load, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
