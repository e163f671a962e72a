//! TURN credentials against a real coturn (`use-auth-secret`), the one `deploy/services.sh coturn
//! start` runs on loopback: what [`TurnIssuer`] issues is accepted and the allocation relays
//! both ways; an expired timestamp, a wrong secret and a stretched expiry are refused with 401.
//!
//! The client is a minimal STUN/TURN one written here (RFC 5389 / RFC 5766 over UDP), so every
//! refusal is seen as the server's own error code. Needs `SWITCHBOARD_TEST_TURN_URL` and
//! `SWITCHBOARD_TEST_TURN_SECRET` (`eval "$(deploy/services.sh env)"`); without them, or without
//! an answer from coturn, every test fails and says so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use ops::config::Secret;
use sha1::Sha1;
use video::turn::TurnIssuer;

const HOW_TO_START: &str =
    "start coturn with `deploy/services.sh coturn start`, then `eval \"$(deploy/services.sh env)\"`";

/// The test coturn's address and shared secret, from the environment.
fn coturn() -> (SocketAddr, Secret) {
    let url = std::env::var("SWITCHBOARD_TEST_TURN_URL")
        .unwrap_or_else(|_| panic!("SWITCHBOARD_TEST_TURN_URL is not set: {HOW_TO_START}"));
    let secret = std::env::var("SWITCHBOARD_TEST_TURN_SECRET")
        .unwrap_or_else(|_| panic!("SWITCHBOARD_TEST_TURN_SECRET is not set: {HOW_TO_START}"));
    let hostport = url.strip_prefix("turn:").unwrap_or_else(|| panic!("{url}: expected turn:HOST:PORT"));
    let hostport = hostport.split('?').next().unwrap_or(hostport);
    let addr = hostport
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .find(SocketAddr::is_ipv4)
        .unwrap_or_else(|| panic!("{url}: no IPv4 address"));
    (addr, Secret::new(secret))
}

fn issuer(secret: Secret, url: SocketAddr, ttl: Duration) -> TurnIssuer {
    TurnIssuer::new(secret, vec![format!("turn:{url}")], ttl, Duration::from_secs(24 * 3600))
}

// ------------------------------------------------------------------ tests --

#[test]
fn issued_credentials_allocate_and_relay_both_ways() {
    let (server, secret) = coturn();
    let ice = issuer(secret, server, Duration::from_secs(3600)).issue("agent:42", Utc::now());
    assert_eq!(ice.urls, [format!("turn:{server}")]);
    assert!(ice.username.ends_with(":agent_42"), "{}", ice.username);

    let mut client = Client::new(server);
    let relayed = client.allocate(&ice.username, &ice.credential).unwrap_or_else(|e| panic!("allocation refused: {e}"));
    assert_eq!(relayed.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "relay-ip of the test coturn");

    // A peer on loopback: permission, then data through the relay each way.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    client.create_permission(peer_addr).unwrap_or_else(|e| panic!("CreatePermission refused: {e}"));

    client.send_indication(peer_addr, b"hello from the customer");
    let mut buf = [0u8; 1500];
    let (n, from) = peer.recv_from(&mut buf).expect("the peer receives the relayed datagram");
    assert_eq!(&buf[..n], b"hello from the customer");
    assert_eq!(from, relayed, "the datagram comes from the relayed address");

    peer.send_to(b"hello from the agent", relayed).unwrap();
    let (from, data) = client.recv_data_indication();
    assert_eq!(from, peer_addr);
    assert_eq!(data, b"hello from the agent");

    client.refresh(0).unwrap_or_else(|e| panic!("releasing the allocation failed: {e}"));
}

#[test]
fn expired_credentials_are_refused() {
    let (server, secret) = coturn();
    // Issued two hours ago for one hour: expired an hour ago, but signed with the right secret.
    let ice =
        issuer(secret, server, Duration::from_secs(3600)).issue("agent-42", Utc::now() - chrono::Duration::hours(2));
    let err = Client::new(server).allocate(&ice.username, &ice.credential).expect_err("expired credentials allocated");
    assert_eq!(err.code, 401, "{err}");
}

#[test]
fn credentials_of_another_secret_are_refused() {
    let (server, secret) = coturn();
    let wrong = Secret::new(format!("{}-not", secret.expose()));
    let ice = issuer(wrong, server, Duration::from_secs(3600)).issue("agent-42", Utc::now());
    let err = Client::new(server).allocate(&ice.username, &ice.credential).expect_err("wrong secret allocated");
    assert_eq!(err.code, 401, "{err}");
}

#[test]
fn a_stretched_expiry_is_refused() {
    // The expiry is signed: moving it later (coturn would accept any future one) breaks the MAC.
    let (server, secret) = coturn();
    let ice = issuer(secret, server, Duration::from_secs(600)).issue("agent-42", Utc::now());
    let (expiry, user) = ice.username.split_once(':').unwrap();
    let stretched = format!("{}:{user}", expiry.parse::<i64>().unwrap() + 30 * 24 * 3600);
    let err = Client::new(server).allocate(&stretched, &ice.credential).expect_err("stretched expiry allocated");
    assert_eq!(err.code, 401, "{err}");
}

#[test]
fn expiry_gates_new_allocations_not_running_ones() {
    // coturn checks the timestamp when an allocation is made: one made in time keeps being
    // refreshed after its credentials expire, while a new one with them is refused. So the TTL
    // must cover the time until the browser's last allocation (its ICE restarts), not the call.
    let (server, secret) = coturn();
    let ice = issuer(secret, server, Duration::from_secs(3)).issue("agent-42", Utc::now());
    let mut client = Client::new(server);
    client.allocate(&ice.username, &ice.credential).unwrap_or_else(|e| panic!("allocation refused: {e}"));
    // coturn compares whole seconds (an expiry equal to its current second is still valid) on a
    // clock it caches: it refuses from a little over 1 s after the expiry. Margin for a busy box.
    let expired = ice.expires_at + chrono::Duration::milliseconds(2500);
    std::thread::sleep((expired - Utc::now()).to_std().unwrap_or_default());
    assert!(ice.expires_at < Utc::now());
    client.refresh(600).unwrap_or_else(|e| panic!("refreshing a running allocation refused: {e}"));
    let err = Client::new(server).allocate(&ice.username, &ice.credential).expect_err("expired credentials allocated");
    assert_eq!(err.code, 401, "{err}");
    client.refresh(0).unwrap_or_else(|e| panic!("releasing the allocation failed: {e}"));
}

// ------------------------------------------------------- STUN/TURN client --

const MAGIC: u32 = 0x2112_A442;

// Message types (method and class bits combined, RFC 5389 section 6).
const ALLOCATE: u16 = 0x0003;
const REFRESH: u16 = 0x0004;
const CREATE_PERMISSION: u16 = 0x0008;
const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;
const SUCCESS: u16 = 0x0100;
const ERROR: u16 = 0x0110;

const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const LIFETIME: u16 = 0x000D;
const XOR_PEER_ADDRESS: u16 = 0x0012;
const DATA: u16 = 0x0013;
const REALM: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

#[derive(Debug)]
struct StunError {
    code: u16,
    reason: String,
}

impl std::fmt::Display for StunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "STUN error {} {:?}", self.code, self.reason)
    }
}

struct Msg {
    typ: u16,
    txid: [u8; 12],
    attrs: Vec<(u16, Vec<u8>)>,
}

impl Msg {
    fn new(typ: u16) -> Self {
        Msg { typ, txid: rand::random(), attrs: Vec::new() }
    }

    fn attr(mut self, typ: u16, value: impl Into<Vec<u8>>) -> Self {
        self.attrs.push((typ, value.into()));
        self
    }

    fn get(&self, typ: u16) -> Option<&[u8]> {
        self.attrs.iter().find(|(t, _)| *t == typ).map(|(_, v)| v.as_slice())
    }

    fn header(typ: u16, len: usize, txid: &[u8; 12]) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + len);
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(txid);
        out
    }

    fn body(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (typ, value) in &self.attrs {
            body.extend_from_slice(&typ.to_be_bytes());
            body.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        body
    }

    /// The message, with MESSAGE-INTEGRITY last when a key is given (RFC 5389 section 15.4:
    /// HMAC-SHA1 over everything before it, the header's length already counting it).
    fn encode(&self, key: Option<&[u8]>) -> Vec<u8> {
        let body = self.body();
        let Some(key) = key else {
            let mut out = Self::header(self.typ, body.len(), &self.txid);
            out.extend_from_slice(&body);
            return out;
        };
        let mut out = Self::header(self.typ, body.len() + 24, &self.txid);
        out.extend_from_slice(&body);
        let mac = hmac_sha1(key, &out);
        out.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
        out.extend_from_slice(&20u16.to_be_bytes());
        out.extend_from_slice(&mac);
        out
    }

    /// Parses a message; with a key, also checks its MESSAGE-INTEGRITY (which must be there).
    fn decode(raw: &[u8], key: Option<&[u8]>) -> Msg {
        assert!(raw.len() >= 20, "short STUN message ({} bytes)", raw.len());
        let typ = u16::from_be_bytes([raw[0], raw[1]]);
        let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
        assert_eq!(u32::from_be_bytes(raw[4..8].try_into().unwrap()), MAGIC, "not a STUN message");
        assert_eq!(raw.len(), 20 + len, "STUN length");
        let txid: [u8; 12] = raw[8..20].try_into().unwrap();
        let mut attrs = Vec::new();
        let mut at = 20;
        let mut integrity_ok = None;
        while at + 4 <= raw.len() {
            let t = u16::from_be_bytes([raw[at], raw[at + 1]]);
            let l = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
            let value = raw[at + 4..at + 4 + l].to_vec();
            if t == MESSAGE_INTEGRITY
                && let Some(key) = key
            {
                let mut signed = raw[..at].to_vec();
                signed[2..4].copy_from_slice(&u16::try_from(at + 24 - 20).unwrap().to_be_bytes());
                integrity_ok = Some(hmac_sha1(key, &signed).as_slice() == value.as_slice());
            }
            attrs.push((t, value));
            at += (4 + l).next_multiple_of(4);
        }
        if key.is_some() {
            assert_eq!(integrity_ok, Some(true), "the response's MESSAGE-INTEGRITY (type {typ:#06x}) does not check");
        }
        Msg { typ, txid, attrs }
    }

    fn error(&self) -> StunError {
        let v = self.get(ERROR_CODE).expect("an error response carries ERROR-CODE");
        StunError { code: u16::from(v[2] & 7) * 100 + u16::from(v[3]), reason: String::from_utf8_lossy(&v[4..]).into() }
    }

    fn xor_address(&self, typ: u16) -> SocketAddr {
        let v = self.get(typ).unwrap_or_else(|| panic!("no attribute {typ:#06x}"));
        assert_eq!(v[1], 1, "IPv4");
        let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
        let ip = u32::from_be_bytes(v[4..8].try_into().unwrap()) ^ MAGIC;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
    }
}

fn xor_address(addr: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = addr else { panic!("IPv4 only") };
    let mut v = vec![0, 1];
    v.extend_from_slice(&(v4.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    v.extend_from_slice(&(u32::from(*v4.ip()) ^ MAGIC).to_be_bytes());
    v
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A TURN client on one UDP socket, with the long-term credentials once allocated.
struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    auth: Option<Auth>,
}

struct Auth {
    username: String,
    realm: String,
    nonce: Vec<u8>,
    key: Vec<u8>,
}

impl Client {
    fn new(server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        Client { socket, server, auth: None }
    }

    /// Sends `req` (retransmitting as RFC 5389 does over UDP) and returns the response to it.
    fn transact(&self, req: &Msg, key: Option<&[u8]>) -> Msg {
        let raw = req.encode(key);
        let mut buf = [0u8; 2048];
        for _ in 0..6 {
            self.socket.send_to(&raw, self.server).unwrap();
            loop {
                match self.socket.recv_from(&mut buf) {
                    Ok((n, from)) if from == self.server && n >= 20 => {
                        if buf[8..20] == req.txid {
                            let is_error = buf[0] & 0x01 == 0x01 && buf[1] & 0x10 == 0x10;
                            // Error responses to an unauthenticated request carry no integrity.
                            return Msg::decode(&buf[..n], if is_error { None } else { key });
                        }
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        break;
                    }
                    Err(e) => panic!("no answer from coturn at {} ({e}): {HOW_TO_START}", self.server),
                }
            }
        }
        panic!("no answer from coturn at {} within 3 s: {HOW_TO_START}", self.server)
    }

    /// Allocate with the long-term mechanism: a first request learns REALM and NONCE from the
    /// 401, the second authenticates. The relayed address, or the server's error.
    fn allocate(&mut self, username: &str, password: &str) -> Result<SocketAddr, StunError> {
        let udp = vec![17, 0, 0, 0];
        let challenge = self.transact(&Msg::new(ALLOCATE).attr(REQUESTED_TRANSPORT, udp.clone()), None);
        assert_eq!(challenge.typ, ALLOCATE | ERROR, "an unauthenticated Allocate gets an error");
        assert_eq!(challenge.error().code, 401, "an unauthenticated Allocate is challenged");
        let realm = String::from_utf8(challenge.get(REALM).expect("REALM").to_vec()).unwrap();
        let nonce = challenge.get(NONCE).expect("NONCE").to_vec();
        let key = md5(format!("{username}:{realm}:{password}").as_bytes()).to_vec();
        let auth = Auth { username: username.to_owned(), realm, nonce, key };
        let res = self.authenticated(&auth, Msg::new(ALLOCATE).attr(REQUESTED_TRANSPORT, udp));
        if res.typ == ALLOCATE | SUCCESS {
            self.auth = Some(auth);
            Ok(res.xor_address(XOR_RELAYED_ADDRESS))
        } else {
            assert_eq!(res.typ, ALLOCATE | ERROR, "unexpected message type");
            Err(res.error())
        }
    }

    fn authenticated(&self, auth: &Auth, req: Msg) -> Msg {
        let req = req
            .attr(USERNAME, auth.username.as_bytes())
            .attr(REALM, auth.realm.as_bytes())
            .attr(NONCE, auth.nonce.clone());
        self.transact(&req, Some(&auth.key))
    }

    fn request(&self, method: u16, req: Msg) -> Result<Msg, StunError> {
        let auth = self.auth.as_ref().expect("allocate first");
        let res = self.authenticated(auth, req);
        if res.typ == method | SUCCESS {
            Ok(res)
        } else {
            assert_eq!(res.typ, method | ERROR, "unexpected message type");
            Err(res.error())
        }
    }

    fn create_permission(&self, peer: SocketAddr) -> Result<(), StunError> {
        let req = Msg::new(CREATE_PERMISSION).attr(XOR_PEER_ADDRESS, xor_address(peer));
        self.request(CREATE_PERMISSION, req).map(drop)
    }

    fn refresh(&self, lifetime_s: u32) -> Result<(), StunError> {
        let req = Msg::new(REFRESH).attr(LIFETIME, lifetime_s.to_be_bytes());
        self.request(REFRESH, req).map(drop)
    }

    fn send_indication(&self, peer: SocketAddr, data: &[u8]) {
        let ind = Msg::new(SEND_INDICATION).attr(XOR_PEER_ADDRESS, xor_address(peer)).attr(DATA, data);
        self.socket.send_to(&ind.encode(None), self.server).unwrap();
    }

    fn recv_data_indication(&self) -> (SocketAddr, Vec<u8>) {
        let mut buf = [0u8; 2048];
        for _ in 0..10 {
            let Ok((n, _)) = self.socket.recv_from(&mut buf) else { continue };
            let msg = Msg::decode(&buf[..n], None);
            if msg.typ == DATA_INDICATION {
                return (msg.xor_address(XOR_PEER_ADDRESS), msg.get(DATA).expect("DATA").to_vec());
            }
        }
        panic!("no Data indication from coturn within 5 s")
    }
}

// --------------------------------------------------------------------- md5 --

/// MD5 (RFC 1321), for the long-term credential key MD5(username:realm:password); the crate has
/// no MD5 dependency of its own.
fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14,
        20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6,
        10, 15, 21,
    ];
    let k: Vec<u32> = (0..64).map(|i: i32| ((f64::from(i) + 1.0).sin().abs() * 4_294_967_296.0) as u32).collect();
    let mut msg = input.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((input.len() as u64).wrapping_mul(8)).to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk.chunks(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        h = [h[0].wrapping_add(a), h[1].wrapping_add(b), h[2].wrapping_add(c), h[3].wrapping_add(d)];
    }
    let mut out = [0u8; 16];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

#[test]
fn md5_matches_rfc_1321() {
    let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        hex(md5(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890")),
        "57edf4a22be3c955ac49da2e2107b67a"
    );
}
