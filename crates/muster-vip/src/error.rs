//! [`VipError`]: what went wrong, on which interface, with which address, doing what.
//!
//! Returned by every [`crate::VipControl`] method of both implementations. The agent binary logs
//! it and feeds the failure back to the core (a holder that cannot add its VIP must not count as
//! holding it); the messages are written for the operator reading the log, e.g.
//! `adding 10.0.0.100/24 to eth0: Operation not permitted (os error 1) (needs CAP_NET_ADMIN)`.

use std::fmt;
use std::io;

/// The operation a [`VipError`] happened in, with the names it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Opening the rtnetlink request socket.
    OpenNetlink,
    /// Subscribing to the kernel's address events.
    SubscribeAddressEvents,
    /// Looking up an interface by name.
    LookupInterface {
        /// Interface name.
        interface: String,
    },
    /// Adding (or replacing) an address.
    AddAddress {
        /// Address with prefix length.
        address: String,
        /// Interface name.
        interface: String,
    },
    /// Deleting an address.
    DeleteAddress {
        /// Address with prefix length.
        address: String,
        /// Interface name.
        interface: String,
    },
    /// Listing the addresses of an interface.
    ListAddresses {
        /// Interface name.
        interface: String,
    },
    /// Opening the AF_PACKET socket used for announcements.
    OpenPacketSocket,
    /// Sending gratuitous ARP / unsolicited NA.
    SendAnnouncement {
        /// Interface name.
        interface: String,
    },
}

impl Action {
    /// The capability that an `EPERM`/`EACCES` during this action points to.
    fn permission_hint(&self) -> &'static str {
        match self {
            Action::OpenPacketSocket | Action::SendAnnouncement { .. } => " (needs CAP_NET_RAW)",
            _ => " (needs CAP_NET_ADMIN)",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::OpenNetlink => write!(f, "opening a netlink socket"),
            Action::SubscribeAddressEvents => write!(f, "subscribing to netlink address events"),
            Action::LookupInterface { interface } => write!(f, "looking up interface {interface}"),
            Action::AddAddress { address, interface } => {
                write!(f, "adding {address} to {interface}")
            }
            Action::DeleteAddress { address, interface } => {
                write!(f, "deleting {address} from {interface}")
            }
            Action::ListAddresses { interface } => {
                write!(f, "listing the addresses of {interface}")
            }
            Action::OpenPacketSocket => write!(f, "opening an AF_PACKET socket"),
            Action::SendAnnouncement { interface } => {
                write!(f, "sending gratuitous ARP/NA on {interface}")
            }
        }
    }
}

/// Which [`crate::VipControl`] method; used by [`crate::MemVip`] to inject failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VipOp {
    /// [`crate::VipControl::acquire`].
    Acquire,
    /// [`crate::VipControl::release`].
    Release,
    /// [`crate::VipControl::is_present`].
    IsPresent,
}

impl fmt::Display for VipOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VipOp::Acquire => "acquire",
            VipOp::Release => "release",
            VipOp::IsPresent => "is_present",
        })
    }
}

/// Why a VIP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The configured interface does not exist (in this network namespace).
    #[error("interface {interface} not found")]
    InterfaceNotFound {
        /// Interface name.
        interface: String,
    },
    /// A system call or netlink request failed.
    #[error("{action}: {source}{hint}")]
    Io {
        /// What was being done.
        action: Action,
        /// The OS error (netlink errors carry the kernel's errno).
        source: io::Error,
        /// `" (needs CAP_...)"` when the error is a permission error, else empty.
        hint: &'static str,
    },
    /// The configuration given to [`crate::NetlinkVip::new`] does not validate.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The lease [`crate::Fence`] says the lease ended while the VIP was being acquired; it was
    /// removed again.
    #[error("the lease ended before the VIP was added; removed it again")]
    LeaseEnded,
    /// [`crate::FenceReleaser::release_now`] got no answer from the fence thread.
    #[error("the VIP fence could not remove the VIP: {why}")]
    FenceUnavailable {
        /// What happened to the thread.
        why: &'static str,
    },
    /// [`crate::NetlinkVip::new`] was called outside a Tokio runtime.
    #[error("NetlinkVip must be created inside a Tokio runtime")]
    NoRuntime,
    /// A failure injected into [`crate::MemVip`].
    #[error("injected failure in {op}")]
    Injected {
        /// The operation that was made to fail.
        op: VipOp,
    },
}

impl VipError {
    /// An [`VipError::Io`] with the capability hint filled in for permission errors.
    pub fn io(action: Action, source: io::Error) -> Self {
        let denied = matches!(
            source.raw_os_error(),
            Some(libc::EPERM) | Some(libc::EACCES)
        ) || source.kind() == io::ErrorKind::PermissionDenied;
        let hint = if denied { action.permission_hint() } else { "" };
        VipError::Io {
            action,
            source,
            hint,
        }
    }

    /// The OS error number, if this error carries one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            VipError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Turns an rtnetlink error into an `io::Error`, keeping the kernel's errno when there is one.
pub(crate) fn netlink_io(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_interface_address_and_operation() {
        let add = Action::AddAddress {
            address: "10.0.0.100/24".into(),
            interface: "eth0".into(),
        };
        let e = VipError::io(add, io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(
            e.to_string(),
            "adding 10.0.0.100/24 to eth0: Operation not permitted (os error 1) \
             (needs CAP_NET_ADMIN)"
        );
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        let send = Action::SendAnnouncement {
            interface: "eth0".into(),
        };
        let e = VipError::io(send.clone(), io::Error::from_raw_os_error(libc::EPERM));
        assert!(e.to_string().ends_with("(needs CAP_NET_RAW)"), "{e}");
        let e = VipError::io(send, io::Error::from_raw_os_error(libc::ENETDOWN));
        assert_eq!(
            e.to_string(),
            "sending gratuitous ARP/NA on eth0: Network is down (os error 100)"
        );
        let missing = VipError::InterfaceNotFound {
            interface: "eth0".into(),
        };
        assert_eq!(missing.to_string(), "interface eth0 not found");
    }
}
