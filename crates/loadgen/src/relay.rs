//! A bare UDP relay: plain RTP in, copies out to everyone else in the same
//! room, from one socket on one thread.
//!
//! It does the least any forwarder must do (receive, look up the room,
//! send once per receiver) and nothing a real SFU must (no ICE, no DTLS or
//! SRTP, no RTCP, no pacing, no rewriting). Run beside the server on the
//! same core with the same generator, it is the ceiling of this machine's
//! network stack, and the server's figures are reported as a fraction of
//! it.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};

/// A participant announces its room with this, then sends RTP.
const HELLO: [u8; 4] = *b"TDLH";

/// The datagram that puts its sender into `room`.
pub fn hello(room: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&HELLO);
    out[4..].copy_from_slice(&room.to_be_bytes());
    out
}

fn room_of_hello(datagram: &[u8]) -> Option<u32> {
    (datagram.len() == 8 && datagram[..4] == HELLO)
        .then(|| u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]))
}

/// Who is in which room.
#[derive(Debug, Default)]
pub struct Rooms {
    members: HashMap<u32, Vec<SocketAddr>>,
    room_of: HashMap<SocketAddr, u32>,
}

impl Rooms {
    /// Handles one datagram from `from`: the addresses to copy it to.
    pub fn route(&mut self, from: SocketAddr, datagram: &[u8]) -> &[SocketAddr] {
        if let Some(room) = room_of_hello(datagram) {
            // An address may come back for another room (a later run
            // reusing a port): it moves.
            if let Some(old) = self.room_of.insert(from, room) {
                if let Some(members) = self.members.get_mut(&old) {
                    members.retain(|m| *m != from);
                }
            }
            let members = self.members.entry(room).or_default();
            if !members.contains(&from) {
                members.push(from);
            }
            return &[];
        }
        self.room_of
            .get(&from)
            .and_then(|room| self.members.get(room))
            .map_or(&[], Vec::as_slice)
    }
}

/// Relays on `listen` until the process ends.
pub fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let socket = UdpSocket::bind(listen)?;
    // The same buffers as the server's media sockets, for a fair ceiling.
    tandem::sfu::socket_buffers(&socket);
    eprintln!("bare UDP relay on {}", socket.local_addr()?);
    let mut rooms = Rooms::default();
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        for &to in rooms.route(from, &buf[..n]) {
            if to != from {
                let _ = socket.send_to(&buf[..n], to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_go_to_everyone_else_in_the_senders_room_only() {
        let a: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:1003".parse().unwrap();
        let mut rooms = Rooms::default();
        assert!(rooms.route(a, b"rtp before hello").is_empty());
        rooms.route(a, &hello(1));
        rooms.route(b, &hello(1));
        rooms.route(b, &hello(1));
        rooms.route(c, &hello(2));
        assert_eq!(rooms.route(a, b"rtp"), [a, b]);
        assert_eq!(rooms.route(c, b"rtp"), [c]);
    }

    #[test]
    fn an_address_that_says_hello_for_another_room_moves() {
        let a: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        let mut rooms = Rooms::default();
        rooms.route(a, &hello(1));
        rooms.route(b, &hello(1));
        rooms.route(a, &hello(7));
        assert_eq!(rooms.route(b, b"rtp"), [b]);
        assert_eq!(rooms.route(a, b"rtp"), [a]);
    }
}
