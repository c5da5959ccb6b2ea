//! The one error type of meshmedic.

use std::path::PathBuf;

/// Where an object came from, so that every message can name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Source {
    /// File path as the user gave it, `-` for stdin, or `cluster` for the API server. Shared:
    /// every object of a file names it (three copies an object while a file is read).
    pub file: std::sync::Arc<str>,
    /// Zero-based index of the YAML document in the file.
    pub document: usize,
    /// Zero-based index of the item when the document is a `kind: List`.
    pub item: Option<usize>,
}

impl Source {
    pub fn new(file: impl Into<std::sync::Arc<str>>, document: usize) -> Source {
        Source {
            file: file.into(),
            document,
            item: None,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.item {
            Some(item) => write!(
                f,
                "{} (document {}, item {})",
                self.file, self.document, item
            ),
            None => write!(f, "{} (document {})", self.file, self.document),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A document that is not valid YAML or JSON.
    #[error("{at}: not valid YAML: {message}")]
    Syntax { at: Source, message: String },

    /// An object whose fields do not have the types Kubernetes or Istio give them.
    #[error("{at}: {object}: field `{field}`: {message}")]
    InvalidField {
        at: Source,
        /// `Kind namespace/name`.
        object: String,
        /// Dotted path of the field, e.g. `spec.trafficPolicy.connectionPool.tcp.idleTimeout`.
        field: String,
        message: String,
    },

    /// A flag value the user gave on the command line.
    #[error("{flag}: {message}")]
    InvalidArgument { flag: String, message: String },

    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
