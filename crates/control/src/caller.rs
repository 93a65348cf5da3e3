//! Who is calling the control plane: a person, or a virtual account acting for automation.

use crate::servers::SubjectKind;
use crate::store::entities::{users, virtual_accounts};

#[derive(Clone, Debug)]
pub enum Caller {
    User(users::Model),
    VirtualAccount(virtual_accounts::Model),
}

impl Caller {
    /// `user:<email>` or `virtualaccount:<name>`: the collaborator subject and audit actor.
    pub fn label(&self) -> String {
        match self {
            Self::User(u) => format!("user:{}", u.email),
            Self::VirtualAccount(va) => format!("virtualaccount:{}", va.name),
        }
    }

    pub fn user(&self) -> Option<&users::Model> {
        match self {
            Self::User(u) => Some(u),
            Self::VirtualAccount(_) => None,
        }
    }

    pub fn is_platform_admin(&self) -> bool {
        matches!(self, Self::User(u) if u.is_platform_admin)
    }

    pub fn subject(&self) -> (SubjectKind, i64) {
        match self {
            Self::User(u) => (SubjectKind::User, u.id),
            Self::VirtualAccount(va) => (SubjectKind::VirtualAccount, va.id),
        }
    }
}
