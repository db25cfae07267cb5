//! What a decision comes to: allow, allow by consuming a token, or refuse
//! with the three parts of a PostgreSQL error.

use crate::audit::Source;
use uuid::Uuid;

/// Why a statement was refused: the three parts of a PostgreSQL error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Which rule refused: the guard's approval rule, a token check, or an
    /// environment rule (the audit log's `source`).
    pub source: Source,
    pub message: String,
    pub detail: String,
    pub hint: String,
}

impl Denial {
    /// The reason as one sentence a person can read (for the audit log).
    pub fn reason(&self) -> String {
        format!("{}. {}", self.message, self.detail)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to refuse.
    Allow,
    /// Protected, but a valid token was presented: consume it, then allow.
    AllowWithToken { token: Uuid },
    /// Protected, but the transaction is a review: allowed without a
    /// token, to take effect only when an approver commits it.
    AllowInReview,
    /// Protected, but sent by another node of the cluster, whose guard
    /// judged (and approved) the statement it is part of
    /// ([`crate::SessionFacts::from_cluster_node`]).
    AllowFromClusterNode,
    /// Refused.
    Deny(Denial),
}
