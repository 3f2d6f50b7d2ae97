//! The load generator's two binaries, run as an operator runs them.
//!
//! Besides what they check, these tests are why `cargo test` builds
//! `tandem-load` and `tandem-relay` at all: cargo builds a package's
//! binaries only for that package's integration tests, and the server's
//! `tandem load-test` / `tandem udp-relay` smoke tests forward to them.

use std::io::BufRead;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_plan_the_generator_cannot_run_is_refused_in_words() {
    let output = Command::new(env!("CARGO_BIN_EXE_tandem-load"))
        .args(["--rooms", "1", "--size", "30", "--api-key", "k"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--size must be from 2 to 20"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_tandem-load"))
        .args(["--rooms", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--api-key is needed"), "{stderr}");
}

#[test]
fn the_relay_copies_a_packet_to_the_others_in_its_room_only() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut relay = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tandem-relay"))
            .args(["--listen", &listen])
            .stderr(Stdio::piped())
            .spawn()
            .expect("the relay starts"),
    );
    let mut said = String::new();
    std::io::BufReader::new(relay.0.stderr.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert!(said.contains(&listen), "it says where it listens: {said}");

    let peer = || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(&listen).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        socket
    };
    let (alice, bob, stranger) = (peer(), peer(), peer());
    alice.send(&tandem_loadgen::relay::hello(1)).unwrap();
    bob.send(&tandem_loadgen::relay::hello(1)).unwrap();
    stranger.send(&tandem_loadgen::relay::hello(2)).unwrap();

    // UDP on loopback: a hello can still be reordered behind the packet,
    // so the packet is sent until it arrives (a few tries at most).
    let mut buf = [0u8; 64];
    let got = (0..10).find_map(|_| {
        alice.send(b"rtp from alice").unwrap();
        bob.recv(&mut buf).ok()
    });
    assert_eq!(got.map(|n| &buf[..n]), Some(&b"rtp from alice"[..]));
    assert!(
        stranger.recv(&mut buf).is_err(),
        "another room hears nothing"
    );
    assert!(alice.recv(&mut buf).is_err(), "the sender gets no echo");
}
