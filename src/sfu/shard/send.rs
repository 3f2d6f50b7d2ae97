//! Batched UDP sends: every datagram one wake of the shard produced leaves
//! in one `sendmmsg` system call (or a few, for a very large wake), and
//! consecutive datagrams to one destination with one size leave as a
//! single UDP GSO message (`UDP_SEGMENT`) inside it.
//!
//! One `sendto` per datagram was the largest single cost of forwarding
//! (docs/benchmarks.md, issue 18): the kernel's per-call work, not the
//! bytes. A wake that forwards a batch of received packets to every
//! subscriber produces dozens of datagrams, and a subscriber drained once
//! per batch gets its share of them in a row, so both batching and GSO
//! apply.
//!
//! Order is kept: messages go out in the order the core produced their
//! datagrams, and a GSO message is a run of consecutive datagrams, so no
//! destination sees its datagrams reordered.
//!
//! Why libc and not a crate: `quinn-udp` sends one message per call (GSO,
//! but no `sendmmsg`), and `nix`'s `sendmmsg` shares one set of control
//! messages across all messages (so a GSO segment size could not differ
//! per message) and reports how many were sent only through an iterator
//! that reads receive-side fields. `quinn-udp` does the capability
//! detection ([`Batcher::new`]); the system call is a few lines here.
//!
//! Kernels without GSO (before 4.18, or a socket that refuses
//! `UDP_SEGMENT`) get `sendmmsg` of single datagrams; a device that
//! refuses a GSO send at run time turns GSO off for the socket, the rest of
//! the batch goes again without it, and the log says so once.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// The most datagrams of one GSO message. The kernel takes up to 64
/// (`UDP_MAX_SEGMENTS`); a video frame sent to one subscriber in one drain
/// is rarely more than a few dozen packets.
const MAX_SEGMENTS: usize = 64;

/// The most bytes of one GSO message: a UDP datagram's payload limit
/// (65,535 less the IPv6/UDP headers' worst case).
const MAX_GSO_BYTES: usize = 65_000;

/// The most messages one `sendmmsg` takes (the kernel's `UIO_MAXIOV` is
/// 1,024); a larger batch takes several calls.
const MAX_MESSAGES: usize = 256;

/// One message of a batch: `count` consecutive datagrams from `first`, to
/// one destination, each `segment` bytes long but the last, which may be
/// shorter. A message of one datagram is an ordinary datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Message {
    pub first: usize,
    pub count: usize,
    pub segment: usize,
}

/// Groups `datagrams` (destination, length), in order, into messages of at
/// most `max_segments` datagrams (1: no GSO). Pure, so the grouping rule
/// is tested without a socket.
pub(super) fn plan(
    datagrams: impl IntoIterator<Item = (SocketAddr, usize)>,
    max_segments: usize,
    messages: &mut Vec<Message>,
) {
    messages.clear();
    // The open message's destination, and whether a shorter datagram
    // closed it (only the last of a GSO message may be shorter).
    let mut open: Option<(SocketAddr, bool)> = None;
    for (i, (destination, len)) in datagrams.into_iter().enumerate() {
        if let (Some((to, closed)), Some(m)) = (open, messages.last_mut()) {
            let fits = (m.count + 1) * m.segment <= MAX_GSO_BYTES;
            if to == destination && !closed && m.count < max_segments && len <= m.segment && fits {
                m.count += 1;
                open = Some((to, len < m.segment));
                continue;
            }
        }
        messages.push(Message {
            first: i,
            count: 1,
            segment: len,
        });
        open = Some((destination, false));
    }
}

/// Sends a shard's datagrams in batches. Holds the buffers of the system
/// call, reused from one batch to the next.
pub(super) struct Batcher {
    /// Datagrams per GSO message: 1 where the kernel or device has no GSO.
    max_segments: usize,
    messages: Vec<Message>,
    addresses: Vec<socket2::SockAddr>,
    iovecs: Vec<libc::iovec>,
    controls: Vec<Control>,
    headers: Vec<libc::mmsghdr>,
}

/// Room for one `UDP_SEGMENT` control message, aligned as a `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C)]
struct Control {
    header: libc::cmsghdr,
    segment: [u64; 1],
}

impl Batcher {
    /// A batcher for a socket bound to `local`: GSO where this kernel has
    /// it (asked of `quinn-udp`, on a socket of its own), and the log says
    /// which path the shard takes.
    pub(super) fn new(shard: usize, local: SocketAddr) -> Batcher {
        let probe = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0));
        let max_segments = probe
            .and_then(|s| quinn_udp::UdpSocketState::new((&s).into()))
            .map(|state| state.max_gso_segments().min(MAX_SEGMENTS))
            .unwrap_or(1)
            .max(1);
        if max_segments > 1 {
            tracing::info!(shard, max_segments, "media sends: sendmmsg with UDP GSO");
        } else {
            tracing::info!(shard, "media sends: sendmmsg, no UDP GSO on this system");
        }
        Batcher::with_segments(max_segments)
    }

    /// A batcher that puts at most `max_segments` datagrams in a message.
    pub(super) fn with_segments(max_segments: usize) -> Batcher {
        Batcher {
            max_segments: max_segments.max(1),
            messages: Vec::new(),
            addresses: Vec::new(),
            iovecs: Vec::new(),
            controls: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Whether GSO is in use.
    #[cfg(test)]
    pub(super) fn gso(&self) -> bool {
        self.max_segments > 1
    }

    /// Sends `datagrams` (destination, bytes), in order, on the socket
    /// `fd`. What the socket refuses is dropped, as the network may drop
    /// it: a full send buffer drops the rest of the batch, any other
    /// refusal the one message.
    pub(super) fn send<B: AsRef<[u8]>>(&mut self, fd: RawFd, datagrams: &[(SocketAddr, B)]) {
        let mut from = 0;
        while from < datagrams.len() {
            let rest = &datagrams[from..];
            plan(
                rest.iter().map(|(to, b)| (*to, b.as_ref().len())),
                self.max_segments,
                &mut self.messages,
            );
            match self.send_planned(fd, rest) {
                Ok(()) => return,
                Err(Refused::Gso(at)) => {
                    tracing::warn!(
                        "media sends: the network device refused a UDP GSO send; \
                         sending datagram by datagram from now on"
                    );
                    self.max_segments = 1;
                    from += at;
                }
            }
        }
    }

    /// Sends the planned messages of `datagrams`. A GSO message refused as
    /// such comes back with the index of its first datagram.
    fn send_planned<B: AsRef<[u8]>>(
        &mut self,
        fd: RawFd,
        datagrams: &[(SocketAddr, B)],
    ) -> Result<(), Refused> {
        let mut next = 0;
        while next < self.messages.len() {
            let end = (next + MAX_MESSAGES).min(self.messages.len());
            match self.sendmmsg(fd, datagrams, next, end) {
                Ok(sent) => next += sent.max(1),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => {
                    let m = self.messages[next];
                    let gso_refused = m.count > 1
                        && matches!(error.raw_os_error(), Some(libc::EIO | libc::EINVAL));
                    if gso_refused {
                        return Err(Refused::Gso(m.first));
                    }
                    tracing::debug!(%error, to = %datagrams[m.first].0, "datagram refused");
                    next += 1;
                }
            }
        }
        Ok(())
    }

    /// One `sendmmsg` of messages `start..end`: how many the kernel took.
    fn sendmmsg<B: AsRef<[u8]>>(
        &mut self,
        fd: RawFd,
        datagrams: &[(SocketAddr, B)],
        start: usize,
        end: usize,
    ) -> io::Result<usize> {
        let messages = &self.messages[start..end];
        self.addresses.clear();
        self.iovecs.clear();
        self.controls.clear();
        self.headers.clear();
        for m in messages {
            self.addresses.push(datagrams[m.first].0.into());
            for (_, bytes) in &datagrams[m.first..m.first + m.count] {
                let bytes = bytes.as_ref();
                self.iovecs.push(libc::iovec {
                    iov_base: bytes.as_ptr() as *mut libc::c_void,
                    iov_len: bytes.len(),
                });
            }
            // SAFETY: a zeroed cmsghdr is a valid (empty) header.
            let mut control: Control = unsafe { std::mem::zeroed() };
            if m.count > 1 {
                control.header.cmsg_level = libc::SOL_UDP;
                control.header.cmsg_type = libc::UDP_SEGMENT;
                // SAFETY: CMSG_LEN only computes a length.
                control.header.cmsg_len = unsafe { libc::CMSG_LEN(2) } as _;
                let segment = m.segment as u16;
                // SAFETY: the data follows the header inside `control`,
                // which has room for it (CMSG_SPACE(2) <= its size).
                unsafe {
                    let data = libc::CMSG_DATA(&control.header);
                    std::ptr::write_unaligned(data as *mut u16, segment);
                }
            }
            self.controls.push(control);
        }
        // The vectors are complete: pointers into them stay valid until
        // the next call clears them.
        let mut iov = 0;
        for (i, m) in messages.iter().enumerate() {
            // SAFETY: a zeroed msghdr is valid; every pointer set below
            // points into a vector that lives until the call returns.
            let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
            header.msg_name = self.addresses[i].as_ptr() as *mut libc::c_void;
            header.msg_namelen = self.addresses[i].len();
            header.msg_iov = self.iovecs[iov..].as_mut_ptr();
            header.msg_iovlen = m.count as _;
            if m.count > 1 {
                header.msg_control = &mut self.controls[i] as *mut Control as *mut libc::c_void;
                // SAFETY: CMSG_SPACE only computes a length.
                header.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
            }
            iov += m.count;
            self.headers.push(libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            });
        }
        // SAFETY: `headers` holds `len` initialised message headers whose
        // pointers (addresses, iovecs, controls, the datagrams' bytes) are
        // valid for the duration of the call.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.headers.as_mut_ptr(),
                self.headers.len() as _,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }
}

/// Why a planned batch stopped short.
enum Refused {
    /// The device refused GSO: the batch goes on without it from the
    /// datagram at this index.
    Gso(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn planned(datagrams: &[(u16, usize)], max_segments: usize) -> Vec<(usize, usize, usize)> {
        let mut messages = Vec::new();
        plan(
            datagrams.iter().map(|&(p, l)| (addr(p), l)),
            max_segments,
            &mut messages,
        );
        messages
            .iter()
            .map(|m| (m.first, m.count, m.segment))
            .collect()
    }

    #[test]
    fn a_run_to_one_destination_with_one_size_is_one_message() {
        let d = [(1, 1200), (1, 1200), (1, 1200), (2, 1200), (2, 100)];
        assert_eq!(planned(&d, 64), vec![(0, 3, 1200), (3, 2, 1200)]);
    }

    #[test]
    fn a_shorter_datagram_ends_its_message_and_a_longer_one_starts_another() {
        let d = [(1, 1200), (1, 900), (1, 900), (1, 1300)];
        assert_eq!(
            planned(&d, 64),
            vec![(0, 2, 1200), (2, 1, 900), (3, 1, 1300)]
        );
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_message() {
        let d = [(1, 1200), (1, 1200), (2, 1200)];
        assert_eq!(
            planned(&d, 1),
            vec![(0, 1, 1200), (1, 1, 1200), (2, 1, 1200)]
        );
    }

    #[test]
    fn a_message_stops_at_the_segment_and_size_limits() {
        let d: Vec<(u16, usize)> = (0..70).map(|_| (1, 100)).collect();
        assert_eq!(planned(&d, 64), vec![(0, 64, 100), (64, 6, 100)]);
        let big: Vec<(u16, usize)> = (0..60).map(|_| (1, 1200)).collect();
        let messages = planned(&big, 64);
        assert!(messages.iter().all(|&(_, n, s)| n * s <= MAX_GSO_BYTES));
        assert_eq!(messages.iter().map(|m| m.1).sum::<usize>(), 60);
    }

    /// Receives `n` datagrams on `socket`, in arrival order.
    fn receive(socket: &std::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|_| {
                let len = socket.recv(&mut buf).expect("a datagram");
                buf[..len].to_vec()
            })
            .collect()
    }

    /// Every datagram arrives, whole and in order per destination, with GSO
    /// (where this kernel has it) and without.
    #[test]
    fn a_batch_arrives_whole_and_in_order_at_each_destination() {
        let sender = std::net::UdpSocket::bind(addr(0)).unwrap();
        let a = std::net::UdpSocket::bind(addr(0)).unwrap();
        let b = std::net::UdpSocket::bind(addr(0)).unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // Runs of equal sizes (GSO), a shorter last one, singles, and the
        // two destinations interleaved.
        let mut datagrams: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        for i in 0..40u8 {
            let to = if i % 10 < 6 { to_a } else { to_b };
            let len = if i % 10 == 5 { 300 } else { 1100 };
            datagrams.push((to, vec![i; len]));
        }
        for batcher in [Batcher::new(0, addr(0)), Batcher::with_segments(1)] {
            let mut batcher = batcher;
            batcher.send(sender.as_raw_fd(), &datagrams);
            for (socket, to) in [(&a, to_a), (&b, to_b)] {
                let expected: Vec<Vec<u8>> = datagrams
                    .iter()
                    .filter(|(d, _)| *d == to)
                    .map(|(_, bytes)| bytes.clone())
                    .collect();
                assert_eq!(
                    receive(socket, expected.len()),
                    expected,
                    "gso: {}",
                    batcher.gso()
                );
            }
        }
    }
}
