//! The engine's errors, one enum per verb composed into [`EngineError`], and the one place
//! where they become ttrpc statuses (for the NRI service and the control service alike).

use injector::annotations::UnknownFaultKind;
use injector::store::StoreError;
use thiserror::Error;

/// Errors the engine hands back to the runtime or to the operator.
#[derive(Debug, Error)]
pub enum EngineError {
    /// CreateContainer refused the container.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// `ctl inject` armed nothing.
    #[error(transparent)]
    Inject(#[from] InjectError),
    /// `ctl recover ID` has nothing to recover.
    #[error(transparent)]
    Recover(#[from] RecoverError),
    /// The durable store (journal of active faults, firing ledger) cannot be opened: no
    /// recovery could be guaranteed.
    #[error("durable store in {path}: {source}")]
    Store {
        /// The state directory.
        path: String,
        /// What failed.
        source: StoreError,
    },
}

/// Why CreateContainer refused a container.
#[derive(Debug, Error)]
pub enum CreateError {
    /// `strict = true` and the container's annotations were rejected.
    #[error("nri-chaos refused container {container} of pod {pod}: {reasons}")]
    Refused {
        /// `namespace/name` of the pod.
        pod: String,
        /// Container name.
        container: String,
        /// Every rejection, `; `-separated.
        reasons: String,
    },
}

/// Why `ctl inject` armed nothing.
#[derive(Debug, Error)]
pub enum InjectError {
    /// The fault kind is not one nri-chaos knows.
    #[error(transparent)]
    Kind(#[from] UnknownFaultKind),
    /// The target is not `namespace/pod[/container]`.
    #[error("target '{0}' is not namespace/pod or namespace/pod/container")]
    Target(String),
    /// No running container matches.
    #[error("no running container matches '{0}' (nri-chaos knows the pods containerd reported over NRI; check namespace, pod and container names)")]
    NotFound(String),
    /// The fault value does not parse or the policy refuses it.
    #[error("{0}")]
    Rejected(String),
}

/// Why `ctl recover ID` recovered nothing.
#[derive(Debug, Error)]
pub enum RecoverError {
    /// No fault has that id.
    #[error("no fault with id {0} (see `nri-chaos ctl list`)")]
    Unknown(u64),
    /// The fault has already ended.
    #[error("fault {id} has already ended ({state})")]
    Ended {
        /// The fault id.
        id: u64,
        /// Its final state.
        state: &'static str,
    },
}

impl EngineError {
    /// The ttrpc status code of this error.
    pub fn code(&self) -> ttrpc::Code {
        match self {
            EngineError::Create(_) => ttrpc::Code::FAILED_PRECONDITION,
            EngineError::Inject(InjectError::NotFound(_)) => ttrpc::Code::NOT_FOUND,
            EngineError::Inject(_) => ttrpc::Code::INVALID_ARGUMENT,
            EngineError::Recover(RecoverError::Unknown(_)) => ttrpc::Code::NOT_FOUND,
            EngineError::Recover(RecoverError::Ended { .. }) => ttrpc::Code::FAILED_PRECONDITION,
            EngineError::Store { .. } => ttrpc::Code::INTERNAL,
        }
    }
}

impl From<EngineError> for ttrpc::Error {
    fn from(err: EngineError) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(err.code(), err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(err: impl Into<EngineError>) -> (ttrpc::Code, String) {
        match ttrpc::Error::from(err.into()) {
            ttrpc::Error::RpcStatus(status) => (status.code(), status.message().to_string()),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn each_error_has_its_code_and_its_text() {
        let (code, text) = status_of(CreateError::Refused {
            pod: "default/web".into(),
            container: "app".into(),
            reasons: "annotation kill.nri-chaos.io: bad".into(),
        });
        assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION);
        assert_eq!(
            text,
            "nri-chaos refused container app of pod default/web: annotation kill.nri-chaos.io: bad"
        );
        let (code, text) = status_of(InjectError::NotFound("default/web".into()));
        assert_eq!(code, ttrpc::Code::NOT_FOUND);
        assert!(text.contains("'default/web'"), "{text}");
        let (code, text) = status_of(InjectError::from(UnknownFaultKind("zap".into())));
        assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);
        assert!(text.contains("zap"), "{text}");
        assert_eq!(
            status_of(RecoverError::Unknown(7)).0,
            ttrpc::Code::NOT_FOUND
        );
        let (code, text) = status_of(RecoverError::Ended {
            id: 7,
            state: "recovered",
        });
        assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION);
        assert_eq!(text, "fault 7 has already ended (recovered)");
    }
}
