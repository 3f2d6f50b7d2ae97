//! When a datagram reached the generator's socket, as the kernel saw it.
//!
//! A packet's added latency is measured from the stamp its sender wrote to
//! the moment its receiver sees it. Seen by the generator's own loop, that
//! moment includes the time the packet waited in the socket while the loop
//! was busy with other participants: on one core the generator does as much
//! SRTP as the server, so at load that wait is part of every figure, and it
//! is the generator's, not the server's. The kernel stamps each datagram as
//! it is queued on the socket (`SO_TIMESTAMPNS`), which leaves out the
//! generator's receive side, so the report quotes both: the latency the
//! generator's loop saw and the latency on the wire.
//!
//! The kernel turns its stamping on lazily, shortly after the first socket
//! asks for it; a datagram that arrived before that is stamped when it is
//! read. Such a figure errs towards the loop's latency, never below what
//! the packet really took.
//!
//! The kernel's stamp is wall-clock time (`CLOCK_REALTIME`) and the run's
//! clock is monotonic. A stamp is converted by its age: how long before the
//! wall clock's present it was taken, subtracted from the monotonic
//! present. Both clocks run at the same (slewed) rate, so this holds within
//! the microseconds between the two readings of the present; only a step
//! of the wall clock between a stamp and its reading misplaces a packet.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// A received datagram: its length, its source, and when the kernel queued
/// it on the socket (`None` if the kernel gave no stamp).
pub(crate) struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    pub wire: Option<Instant>,
}

impl Datagram {
    /// Its arrival, seen by the participant's loop now.
    pub fn seen_now(&self) -> ArrivalTime {
        ArrivalTime {
            seen: Instant::now(),
            wire: self.wire,
        }
    }
}

/// When a packet arrived: when the participant's loop saw it, and when the
/// kernel queued it on the socket, if the kernel said.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArrivalTime {
    pub seen: Instant,
    pub wire: Option<Instant>,
}

/// Asks the kernel to stamp every datagram `socket` receives. A kernel
/// that refuses leaves the run with the loop's latency only.
pub(crate) fn stamp_arrivals(socket: &UdpSocket) {
    let _ = setsockopt(socket, sockopt::ReceiveTimestampns, &true);
}

/// Waits for the next datagram on `socket`.
pub(crate) async fn receive(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    socket
        .async_io(Interest::READABLE, || receive_now(socket, buf))
        .await
}

/// The next datagram already queued on `socket`, without waiting
/// (`WouldBlock` when there is none).
pub(crate) fn try_receive(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    socket.try_io(Interest::READABLE, || receive_now(socket, buf))
}

fn receive_now(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut control = nix::cmsg_space!(TimeSpec);
    let mut parts = [IoSliceMut::new(buf)];
    let message = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut parts,
        Some(&mut control),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let from = message
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                })
        })
        .ok_or_else(|| io::Error::other("datagram without an IP source"))?;
    let stamped = message.cmsgs().ok().and_then(|mut all| {
        all.find_map(|c| match c {
            ControlMessageOwned::ScmTimestampns(at) => Some(at),
            _ => None,
        })
    });
    let wire = stamped.and_then(|at| {
        let at = SystemTime::UNIX_EPOCH
            + Duration::new(u64::try_from(at.tv_sec()).ok()?, at.tv_nsec() as u32);
        Some(on_monotonic_clock(at, SystemTime::now(), Instant::now()))
    });
    Ok(Datagram {
        len: message.bytes,
        from,
        wire,
    })
}

/// The monotonic instant of a wall-clock `stamp`, given both clocks'
/// present. A stamp from the future (the wall clock stepped back) is the
/// present: no latency is made up.
fn on_monotonic_clock(stamp: SystemTime, wall_now: SystemTime, now: Instant) -> Instant {
    let age = wall_now.duration_since(stamp).unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_placed_its_age_before_the_present() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let stamp = wall - Duration::from_micros(350);
        assert_eq!(
            on_monotonic_clock(stamp, wall, now),
            now - Duration::from_micros(350)
        );
    }

    #[test]
    fn a_stamp_after_the_present_counts_as_the_present() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let stamp = wall + Duration::from_millis(5);
        assert_eq!(on_monotonic_clock(stamp, wall, now), now);
    }

    #[tokio::test]
    async fn the_kernel_stamps_a_datagram_when_it_arrives_not_when_it_is_read() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stamp_arrivals(&receiver);
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 64];
        // The kernel turns stamping on in the background once a socket asks
        // for it; until then it stamps a datagram when it is read. So a few
        // tries, each with a datagram that waits 30 ms in the socket, as it
        // would for a busy loop.
        let mut waits = Vec::new();
        for _ in 0..20 {
            let before = Instant::now();
            sender
                .send_to(b"hello", receiver.local_addr().unwrap())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            let got = receive(&receiver, &mut buf).await.unwrap();
            let read_at = Instant::now();
            assert_eq!(&buf[..got.len], b"hello");
            assert_eq!(got.from, sender.local_addr().unwrap());
            let wire = got.wire.expect("Linux stamps received datagrams");
            // Never before it was sent, never after it was read.
            assert!(
                wire + Duration::from_millis(1) >= before,
                "{wire:?} {before:?}"
            );
            assert!(wire <= read_at, "{wire:?} {read_at:?}");
            waits.push(read_at - wire);
            if read_at - wire >= Duration::from_millis(25) {
                break;
            }
        }
        // The 30 ms in the socket are not part of the time on the wire.
        assert!(
            waits.last().unwrap() >= &Duration::from_millis(25),
            "waits in the socket as stamped: {waits:?}"
        );
        assert!(matches!(
            try_receive(&receiver, &mut buf),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    }
}
