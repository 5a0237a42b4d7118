//! The daemon's errors, each with the Docker API status it answers with.

/// Why a daemon operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: no container by that name or id.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// 404: no image by that reference or id.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// 404: no volume by that name.
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// 404: no network by that name.
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// 404: no such path in a container.
    #[error("Could not find the file {0} in container")]
    NoSuchPath(String),
    /// 404: no exec instance by that id.
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    /// 409: the request conflicts with the object's state (name in use, running, ...).
    #[error("{0}")]
    Conflict(String),
    /// 400: a parameter is invalid (the message names it).
    #[error("{0}")]
    BadParameter(String),
    /// 401: a registry refused the credentials (the message says which and why).
    #[error("{0}")]
    Unauthorized(String),
    /// 304: already in the requested state (start of a running container, stop of a stopped one).
    #[error("container already {0}")]
    NotModified(&'static str),
    /// 500: something failed underneath.
    #[error("{what}: {cause}")]
    Internal {
        /// What was being done.
        what: String,
        /// The cause and its sources, on one line.
        cause: String,
    },
}

impl Error {
    /// A 500 for `what`, keeping the whole chain of `e` in the message.
    pub fn internal(what: impl Into<String>, e: impl std::error::Error) -> Self {
        Error::Internal {
            what: what.into(),
            cause: crate::images::chain(&e),
        }
    }

    /// The HTTP status docker answers with.
    pub fn status(&self) -> u16 {
        match self {
            Error::NoSuchContainer(_)
            | Error::NoSuchImage(_)
            | Error::NoSuchExec(_)
            | Error::NoSuchVolume(_)
            | Error::NoSuchPath(_)
            | Error::NoSuchNetwork(_) => 404,
            Error::Conflict(_) => 409,
            Error::BadParameter(_) => 400,
            Error::NotModified(_) => 304,
            Error::Unauthorized(_) => 401,
            Error::Internal { .. } => 500,
        }
    }
}
