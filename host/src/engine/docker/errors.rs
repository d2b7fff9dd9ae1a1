//! What the Docker API's errors mean here: a lost engine, a missing or
//! conflicting object.

use crate::engine::EngineError;

impl From<bollard::errors::Error> for EngineError {
    fn from(e: bollard::errors::Error) -> Self {
        // Connecting failed after the run began: the engine went away.
        let lost = match &e {
            bollard::errors::Error::HyperLegacyError { err } => err.is_connect(),
            bollard::errors::Error::IOError { .. } => true,
            _ => false,
        };
        if lost { EngineError::Lost(e.into()) } else { EngineError::api(e) }
    }
}

pub(in crate::engine) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

pub(in crate::engine) fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })
}
