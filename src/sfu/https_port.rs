//! Media on the HTTPS port: ICE-TCP that arrives on the HTTPS listener.
//!
//! Some clinic and office networks let out nothing but TCP to port 443.
//! Rather than a second listener (TURN) that such a network would also
//! have to allow, the HTTPS listener itself takes ICE-TCP (RFC 6544, RFC
//! 4571 framing) and hands it to the media shard that owns the peer
//! connection. The two protocols cannot be confused by their first bytes:
//! a TLS connection opens with a handshake record (0x16, then version 3.x),
//! an ICE-TCP one with a 16-bit frame length and a STUN binding request,
//! whose first byte is 0x00 or 0x01 (RFC 5389 §6: the top two bits of a
//! STUN message are zero).
//!
//! Which shard? The server's ICE username fragment names it: every peer
//! connection a shard makes gets a ufrag that starts with the shard's index
//! and a `+` ([`local_credentials`]), and the client's first binding
//! request carries that ufrag in its USERNAME. Nothing is looked up, so the
//! listener needs no table shared with the shards.
//!
//! Everything here is a pure function of the bytes; the listener does the
//! reading (the HTTPS listener), the shard the rest ([`super::tcp`]).

use std::time::Duration;

use str0m::ice::{IceCreds, StunMessage};
use tokio::net::TcpStream;

/// The content type of a TLS handshake record, a TLS connection's first
/// byte.
const TLS_HANDSHAKE: u8 = 0x16;

/// How long to wait before looking again at a first frame not yet whole
/// (a binding request fits one TCP segment, so this is rare).
const REPEEK_AFTER: Duration = Duration::from_millis(20);

/// Bytes to peek before a connection can be told apart: the frame length
/// and the largest first frame a client sends (a binding request is ~100
/// bytes; [`super::tcp::MAX_FRAME`] is the cap).
pub(crate) const PEEK_MAX: usize = 2 + super::tcp::MAX_FRAME;

/// What the first bytes of a connection to the HTTPS port are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FirstBytes {
    /// A TLS handshake: HTTPS as usual.
    Tls,
    /// An ICE-TCP binding request for a peer connection of shard `shard`.
    IceTcp { shard: usize },
    /// ICE-TCP so far, but its first frame is not all here yet.
    NeedMore,
    /// Neither: close the connection.
    Neither,
}

/// Waits for the first bytes of `tcp` and classifies them, without taking
/// them off the socket: TLS or ICE-TCP then reads the connection from its
/// first byte. The caller bounds the wait.
pub(crate) async fn first_bytes(tcp: &TcpStream) -> FirstBytes {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => return FirstBytes::Neither,
        Ok(_) if first[0] == TLS_HANDSHAKE => return FirstBytes::Tls,
        Ok(_) => {}
    }
    let mut bytes = vec![0u8; PEEK_MAX];
    loop {
        let n = match tcp.peek(&mut bytes).await {
            Ok(0) | Err(_) => return FirstBytes::Neither,
            Ok(n) => n,
        };
        match classify(&bytes[..n]) {
            // Peeking again at once would see the same bytes: let more come.
            FirstBytes::NeedMore => tokio::time::sleep(REPEEK_AFTER).await,
            decided => return decided,
        }
    }
}

/// Classifies the first bytes a client sent to the HTTPS port.
pub(crate) fn classify(bytes: &[u8]) -> FirstBytes {
    match bytes {
        [] => FirstBytes::NeedMore,
        [TLS_HANDSHAKE, ..] => FirstBytes::Tls,
        [_] => FirstBytes::NeedMore,
        [high, low, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*high, *low]));
            if len > super::tcp::MAX_FRAME {
                return FirstBytes::Neither;
            }
            let Some(frame) = rest.get(..len) else {
                return FirstBytes::NeedMore;
            };
            let Ok(stun) = StunMessage::parse(frame) else {
                return FirstBytes::Neither;
            };
            if !stun.is_binding_request() {
                return FirstBytes::Neither;
            }
            match stun.split_username().and_then(|(ours, _)| shard_of(ours)) {
                Some(shard) => FirstBytes::IceTcp { shard },
                None => FirstBytes::Neither,
            }
        }
    }
}

/// ICE credentials for a peer connection of shard `shard`: str0m's random
/// ones, the ufrag prefixed with the shard's index (ICE allows `+` in a
/// ufrag, RFC 8839 §5.4). The random part keeps its full length, so the
/// prefix adds to its entropy rather than replacing any.
pub(crate) fn local_credentials(shard: usize) -> IceCreds {
    let random = IceCreds::new();
    IceCreds {
        ufrag: format!("{shard}+{}", random.ufrag),
        pass: random.pass,
    }
}

/// The shard a ufrag from [`local_credentials`] belongs to.
fn shard_of(ufrag: &str) -> Option<usize> {
    let (index, _) = ufrag.split_once('+')?;
    if index.is_empty() || index.len() > 4 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    index.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::ice::{StunMessage, TransId};

    /// A client's binding request to the server, framed as ICE-TCP sends it.
    fn framed_binding_request(server_ufrag: &str) -> Vec<u8> {
        let username = format!("{server_ufrag}:client");
        let request =
            StunMessage::binding_request(&username, TransId::new(), true, 0, 1_000, false);
        let mut body = vec![0u8; 512];
        let n = request
            .to_bytes(
                Some(b"password-of-the-server"),
                &mut body,
                |_key, _parts| [0; 20],
            )
            .expect("fits");
        let mut framed = (n as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&body[..n]);
        framed
    }

    #[test]
    fn a_tls_client_hello_is_https() {
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), FirstBytes::Tls);
        assert_eq!(classify(&[0x16]), FirstBytes::Tls);
    }

    #[test]
    fn a_binding_request_names_the_shard_of_its_peer_connection() {
        for shard in [0, 1, 7, 31] {
            let creds = local_credentials(shard);
            let framed = framed_binding_request(&creds.ufrag);
            assert_eq!(classify(&framed), FirstBytes::IceTcp { shard });
        }
    }

    #[test]
    fn a_frame_not_yet_whole_waits_and_anything_else_is_refused() {
        let framed = framed_binding_request(&local_credentials(2).ufrag);
        for cut in [0, 1, 2, 10, framed.len() - 1] {
            assert_eq!(
                classify(&framed[..cut]),
                FirstBytes::NeedMore,
                "{cut} bytes"
            );
        }
        // Plain HTTP, SSH, a frame longer than ICE-TCP allows, a frame that
        // is not STUN, and a ufrag that no shard made.
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), FirstBytes::Neither);
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), FirstBytes::Neither);
        assert_eq!(classify(&[0x10, 0x01, 0, 1]), FirstBytes::Neither);
        assert_eq!(classify(&[0, 4, 1, 2, 3, 4]), FirstBytes::Neither);
        let foreign = framed_binding_request("abcd");
        assert_eq!(classify(&foreign), FirstBytes::Neither);
    }

    #[test]
    fn ufrags_keep_their_randomness_and_name_their_shard() {
        let a = local_credentials(3);
        let b = local_credentials(3);
        assert_ne!(a.ufrag, b.ufrag);
        assert_eq!(shard_of(&a.ufrag), Some(3));
        assert!(a.ufrag.len() >= 16 + 2);
        assert_eq!(shard_of("+abc"), None);
        assert_eq!(shard_of("x1+abc"), None);
        assert_eq!(shard_of("12345+abc"), None);
    }
}
