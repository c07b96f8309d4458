//! Link notifications: a subscription to RTNLGRP_LINK, read with a deadline (and an optional stop fd).
use super::link::to_link;
use super::Link;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

/// rtnetlink's multicast group of link changes (`RTNLGRP_LINK` in linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;

/// A subscription to the link notifications of the namespace of the thread that opened it. The kernel queues
/// only what happens after `open`, so open it before making the change to wait for.
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

/// One link notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: the link as it is now.
    Changed(Link),
    /// RTM_DELLINK of this ifindex.
    Removed(u32),
    /// The socket's queue overflowed (ENOBUFS) and notifications were lost: ask for the state instead.
    Lost,
}

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.add_membership(RTNLGRP_LINK)?;
        socket.set_non_blocking(true)?;
        Ok(LinkEvents { socket, buf: Vec::with_capacity(1 << 16) })
    }

    /// The next batch of notifications, or None once `deadline` has passed without one.
    pub fn next(&mut self, deadline: Instant) -> io::Result<Option<Vec<LinkEvent>>> {
        self.next_unless(deadline, None)
    }

    /// `next`, also giving up (None) once `stop` is readable or closed, after what is queued was read.
    pub fn next_unless(&mut self, deadline: Instant, stop: Option<BorrowedFd<'_>>) -> io::Result<Option<Vec<LinkEvent>>> {
        let mut stopped = false;
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(n) => return Ok(Some(parse_link_events(&self.buf[..n]))),
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => return Ok(Some(vec![LinkEvent::Lost])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stopped {
                return Ok(None);
            }
            // Rounded up: a timeout of 0 ms would spin on the last fraction of a millisecond.
            let ms = PollTimeout::try_from(left.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX);
            let mut fds = vec![PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            fds.extend(stop.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
            match poll(&mut fds, ms) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            // Read once more before giving up: the stop may come with notifications already queued.
            stopped = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        }
    }

    /// Waits until the kernel announces that link `index` is gone (RTM_DELLINK, sent once the link is
    /// unregistered: its addresses and routes are already removed, while the deleting call still waits out
    /// the teardown's RCU grace periods). False without the event if `stop` becomes readable (the deleting
    /// side finished or failed) or `timeout` passes.
    pub fn wait_deleted(&mut self, index: u32, stop: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        while let Some(batch) = self.next_unless(deadline, Some(stop))? {
            if batch.iter().any(|e| matches!(e, LinkEvent::Removed(i) if *i == index)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The link notifications in one read (other messages are skipped).
fn parse_link_events(mut buf: &[u8]) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    while !buf.is_empty() {
        // A notification this crate cannot decode is one lost, not a failure of whoever waits.
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(buf) else {
            events.push(LinkEvent::Lost);
            break;
        };
        let len = (msg.header.length as usize + 3) & !3;
        if len == 0 {
            events.push(LinkEvent::Lost);
            break;
        }
        match &msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => events.push(LinkEvent::Changed(to_link(l))),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => events.push(LinkEvent::Removed(l.header.index)),
            _ => {}
        }
        buf = buf.get(len..).unwrap_or_default();
    }
    events
}
