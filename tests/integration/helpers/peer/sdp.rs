//! The few SDP and candidate facts the peer needs, read from text.

use std::collections::BTreeSet;

/// MediaStream ids of the m-lines that are not inactive (or rejected).
pub fn active_stream_ids(sdp: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for section in media_sections(sdp) {
        let rejected = section[0].split_whitespace().nth(1) == Some("0");
        if rejected || section.contains(&"a=inactive") {
            continue;
        }
        let msid = section
            .iter()
            .find_map(|l| l.strip_prefix("a=msid:"))
            .or_else(|| {
                section
                    .iter()
                    .filter(|l| l.starts_with("a=ssrc:"))
                    .find_map(|l| l.split_once(" msid:").map(|(_, m)| m))
            });
        if let Some(stream) = msid.and_then(|m| m.split_whitespace().next()) {
            if stream != "-" {
                ids.insert(stream.to_owned());
            }
        }
    }
    ids
}

pub fn first_mid(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
}

/// The mid of the first m-section of `media` ("audio", "video").
pub fn mid_of_first<'a>(sdp: &'a str, media: &str) -> Option<&'a str> {
    media_sections(sdp)
        .into_iter()
        .find(|s| s[0].starts_with(&format!("m={media} ")))?
        .iter()
        .find_map(|l| l.strip_prefix("a=mid:"))
}

/// `candidate:...` of every passive TCP candidate line.
pub fn passive_tcp_candidates(sdp: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a="))
        .filter(|c| ParsedCandidate::parse(c).is_some_and(|p| p.is_passive_tcp()))
        .filter(|c| seen.insert(c.to_string()))
        .map(str::to_owned)
        .collect()
}

/// Lines of each media section, its `m=` line first.
fn media_sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            sections.push(vec![line]);
        } else if let Some(section) = sections.last_mut() {
            section.push(line);
        }
    }
    sections
}

/// The parts of `candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY
/// ADDRESS PORT typ TYPE [tcptype T]` that matter here.
pub struct ParsedCandidate {
    pub transport: String,
    pub address: String,
    pub port: u16,
    pub tcptype: Option<String>,
}

impl ParsedCandidate {
    pub fn parse(candidate: &str) -> Option<ParsedCandidate> {
        let text = candidate.strip_prefix("a=").unwrap_or(candidate);
        let text = text.strip_prefix("candidate:")?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let tcptype = fields
            .iter()
            .position(|f| *f == "tcptype")
            .and_then(|i| fields.get(i + 1))
            .map(|t| t.to_ascii_lowercase());
        Some(ParsedCandidate {
            transport: fields.get(2)?.to_ascii_lowercase(),
            address: fields.get(4)?.to_string(),
            port: fields.get(5)?.parse().ok()?,
            tcptype,
        })
    }

    pub fn is_passive_tcp(&self) -> bool {
        self.transport == "tcp" && self.tcptype.as_deref() == Some("passive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_offers_are_read() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a1\r\na=sendonly\r\na=msid:pat-1 t1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\na=inactive\r\na=msid:par-1 t2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v2\r\na=sendonly\r\na=ssrc:5 msid:clin-1 t3\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
            a=candidate:2 1 tcp 2130706431 127.0.0.1 5001 typ host tcptype passive\r\n\
            a=candidate:2 1 tcp 2130706431 127.0.0.1 5001 typ host tcptype passive\r\n";
        let ids: Vec<_> = active_stream_ids(sdp).into_iter().collect();
        assert_eq!(ids, ["clin-1", "pat-1"]);
        assert_eq!(first_mid(sdp), Some("a1"));
        assert_eq!(mid_of_first(sdp, "video"), Some("v1"));
        assert_eq!(mid_of_first(sdp, "application"), None);
        assert_eq!(
            passive_tcp_candidates(sdp),
            ["candidate:2 1 tcp 2130706431 127.0.0.1 5001 typ host tcptype passive"]
        );
        let udp = ParsedCandidate::parse("candidate:1 1 UDP 1 10.0.0.1 9 typ host").unwrap();
        assert_eq!((udp.transport.as_str(), udp.port), ("udp", 9));
        assert!(!udp.is_passive_tcp());
    }
}
