//! Which peer a datagram on the shared UDP port belongs to. A known source address maps
//! straight to its peer; otherwise the datagram must be a STUN binding request whose USERNAME
//! starts with one of our peers' ICE username fragments (`<ours>:<theirs>`, RFC 8445 §7.2.2),
//! and its address is learnt from then on. Anything else is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::router::PeerId;

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// The local part (before the colon) of a STUN message's USERNAME, if `data` is STUN with one.
pub fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] >> 6 != 0 || data[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// The address and ufrag tables of the SFU's peers.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
}

impl Demux {
    /// Recognises `ufrag` as `peer`'s (a peer has one more after each ICE restart).
    pub fn add(&mut self, peer: PeerId, ufrag: &str) {
        self.by_ufrag.insert(ufrag.to_owned(), peer);
    }

    /// Forgets a peer and every address it used.
    pub fn remove(&mut self, peer: PeerId) {
        self.by_ufrag.retain(|_, p| *p != peer);
        self.by_addr.retain(|_, p| *p != peer);
    }

    /// The peer a datagram from `from` belongs to; learns `from` from a STUN request.
    pub fn route(&mut self, from: SocketAddr, data: &[u8]) -> Option<PeerId> {
        if let Some(ufrag) = stun_local_ufrag(data)
            && let Some(&peer) = self.by_ufrag.get(ufrag)
        {
            // a consent check or a path change (ICE restart, TURN relay): the newest wins
            self.by_addr.insert(from, peer);
            return Some(peer);
        }
        self.by_addr.get(&from).copied()
    }

    pub fn addresses(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // a PRIORITY attribute first, so the parser has to skip one
        attrs.extend_from_slice(&0x0024u16.to_be_bytes());
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&[0, 0, 0, 1]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn stun_usernames_are_read_and_garbage_is_not() {
        assert_eq!(stun_local_ufrag(&binding_request("serverUfrag:clientX")), Some("serverUfrag"));
        assert_eq!(stun_local_ufrag(&binding_request("abc")), Some("abc"));
        assert_eq!(stun_local_ufrag(b"\x80\x60 not stun at all, an RTP packet...."), None);
        assert_eq!(stun_local_ufrag(&[0u8; 19]), None, "too short");
        let mut truncated = binding_request("serverUfrag:clientX");
        truncated.truncate(30);
        assert_eq!(stun_local_ufrag(&truncated), None, "a length beyond the datagram");
    }

    #[test]
    fn addresses_are_learnt_from_stun_only() {
        let mut d = Demux::default();
        d.add(7, "peerseven");
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:6000".parse().unwrap();
        assert_eq!(d.route(a, b"\x80\x60 media from an unknown address"), None);
        assert_eq!(d.route(a, &binding_request("peerseven:x")), Some(7));
        assert_eq!(d.route(a, b"\x80\x60 media"), Some(7));
        assert_eq!(d.route(b, &binding_request("someoneelse:x")), None, "an unknown ufrag");
        d.remove(7);
        assert_eq!(d.route(a, b"\x80\x60 media"), None);
        assert_eq!(d.addresses(), 0);
    }
}
