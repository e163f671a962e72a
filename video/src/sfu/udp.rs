//! Batched datagram I/O on the SFU's one socket: `recvmmsg` reads up to [`BATCH`] datagrams
//! in one system call, and `sendmmsg` writes what a turn of the task produced, to any number of
//! peers, [`BATCH`] datagrams per call. A profile of the forwarding benchmark put about 30% of
//! the SFU's time in one `recvfrom` / `sendto` per datagram; an SFU sends each packet to every
//! other participant, so the send side is the larger share. nix wraps both calls without
//! `unsafe` in this crate (the workspace forbids it).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call, both ways.
pub const BATCH: usize = 32;

/// Room for one datagram: more than any path MTU; a longer datagram is cut and then fails its
/// SRTP / DTLS / STUN check like any other corrupt one.
const DATAGRAM: usize = 2048;

/// The receive buffers, reused by every read.
pub struct Inbox {
    bufs: Vec<Vec<u8>>,
    /// (length, sender) of each datagram of the last read, in the order of `bufs`.
    got: Vec<(usize, SocketAddr)>,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox { bufs: (0..BATCH).map(|_| vec![0; DATAGRAM]).collect(), got: Vec::with_capacity(BATCH) }
    }
}

impl Inbox {
    /// Reads up to [`BATCH`] datagrams the socket already holds, without waiting; `Ok(0)` when
    /// it holds none (and the socket's readiness is cleared, so `readable()` waits again).
    pub fn read(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.got.clear();
        let (bufs, got) = (&mut self.bufs, &mut self.got);
        let read = socket.try_io(Interest::READABLE, || {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(bufs.len(), None);
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            let results = recvmmsg(socket.as_raw_fd(), &mut headers, slices.iter_mut(), MsgFlags::empty(), None)
                .map_err(io::Error::from)?;
            for message in results {
                // a datagram always has a sender; one of another family cannot be ours
                match message.address.as_ref().and_then(std_address) {
                    Some(from) => got.push((message.bytes, from)),
                    None => got.push((0, SocketAddr::from(([0, 0, 0, 0], 0)))),
                }
            }
            Ok(())
        });
        match read {
            Ok(()) => Ok(self.got.len()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The datagrams of the last read.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.got
            .iter()
            .zip(&self.bufs)
            .filter(|((len, _), _)| *len > 0)
            .map(|((len, from), buf)| (*from, &buf[..(*len).min(buf.len())]))
    }
}

fn std_address(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    address.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// What one [`send_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub sent: u64,
    /// Refused by the kernel (a full socket buffer, most often): dropped, as the network would.
    pub dropped: u64,
}

/// Sends every datagram of `out`, [`BATCH`] per system call. A datagram the kernel refuses is
/// counted as dropped and the ones after it are still sent, as one `sendto` per datagram did.
pub fn send_all<B: AsRef<[u8]>>(socket: &UdpSocket, out: &[(SocketAddr, B)]) -> Sent {
    let mut result = Sent::default();
    let mut rest = out;
    let no_control: [ControlMessage<'_>; 0] = [];
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(BATCH)];
        let addresses: Vec<Option<SockaddrStorage>> =
            chunk.iter().map(|(to, _)| Some(SockaddrStorage::from(*to))).collect();
        let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(_, bytes)| [IoSlice::new(bytes.as_ref())]).collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(chunk.len(), None);
        let sent = match sendmmsg(socket.as_raw_fd(), &mut headers, &slices, &addresses, no_control, MsgFlags::empty())
        {
            Ok(results) => results.count(),
            Err(_) => 0,
        };
        result.sent += sent as u64;
        if sent < chunk.len() {
            // the kernel refused the datagram after the last one sent: skip it, go on after it
            result.dropped += 1;
            rest = &rest[sent + 1..];
        } else {
            rest = &rest[sent..];
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bound() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// Reads until `want` datagrams came (loopback delivers at once, but readiness is async).
    async fn read_all(inbox: &mut Inbox, socket: &UdpSocket, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        while got.len() < want {
            socket.readable().await.unwrap();
            inbox.read(socket).unwrap();
            got.extend(inbox.datagrams().map(|(from, data)| (from, data.to_vec())));
        }
        got
    }

    #[tokio::test]
    async fn a_batch_reaches_several_peers_each_datagram_once_in_order() {
        let sfu = bound().await;
        let (a, b) = (bound().await, bound().await);
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // more than two system calls' worth, interleaved between the peers, of varied sizes
        let out: Vec<(SocketAddr, Vec<u8>)> =
            (0..BATCH * 2 + 5).map(|i| (if i % 3 == 0 { to_b } else { to_a }, vec![i as u8; 10 + i * 7])).collect();
        let sent = send_all(&sfu, &out);
        assert_eq!(sent, Sent { sent: out.len() as u64, dropped: 0 });

        let (mut inbox_a, mut inbox_b) = (Inbox::default(), Inbox::default());
        let want_a: Vec<Vec<u8>> = out.iter().filter(|(to, _)| *to == to_a).map(|(_, d)| d.clone()).collect();
        let want_b: Vec<Vec<u8>> = out.iter().filter(|(to, _)| *to == to_b).map(|(_, d)| d.clone()).collect();
        let got_a = read_all(&mut inbox_a, &a, want_a.len()).await;
        let got_b = read_all(&mut inbox_b, &b, want_b.len()).await;
        let sender = sfu.local_addr().unwrap();
        assert!(got_a.iter().chain(&got_b).all(|(from, _)| *from == sender));
        assert_eq!(got_a.into_iter().map(|(_, d)| d).collect::<Vec<_>>(), want_a);
        assert_eq!(got_b.into_iter().map(|(_, d)| d).collect::<Vec<_>>(), want_b);
    }

    #[tokio::test]
    async fn a_read_takes_at_most_one_batch_and_an_empty_socket_reads_nothing() {
        let (sfu, peer) = (bound().await, bound().await);
        let to = sfu.local_addr().unwrap();
        for i in 0..BATCH + 3 {
            peer.send_to(&[i as u8; 3], to).await.unwrap();
        }
        let mut inbox = Inbox::default();
        sfu.readable().await.unwrap();
        let first = inbox.read(&sfu).unwrap();
        assert!((1..=BATCH).contains(&first), "{first}");
        let mut seen: Vec<u8> = inbox.datagrams().map(|(_, d)| d[0]).collect();
        while seen.len() < BATCH + 3 {
            sfu.readable().await.unwrap();
            inbox.read(&sfu).unwrap();
            seen.extend(inbox.datagrams().map(|(_, d)| d[0]));
        }
        assert_eq!(seen, (0..BATCH as u8 + 3).collect::<Vec<_>>());
        assert_eq!(inbox.read(&sfu).unwrap(), 0);
        assert_eq!(inbox.datagrams().count(), 0);
    }

    #[tokio::test]
    async fn a_refused_datagram_is_counted_and_the_rest_still_go() {
        let sfu = bound().await;
        let peer = bound().await;
        let to = peer.local_addr().unwrap();
        // an IPv6 destination on an IPv4 socket: the kernel refuses that one datagram
        let bad: SocketAddr = "[::1]:9".parse().unwrap();
        let out = vec![(to, vec![1u8]), (bad, vec![2u8]), (to, vec![3u8])];
        assert_eq!(send_all(&sfu, &out), Sent { sent: 2, dropped: 1 });
        let got = read_all(&mut Inbox::default(), &peer, 2).await;
        assert_eq!(got.into_iter().map(|(_, d)| d).collect::<Vec<_>>(), vec![vec![1u8], vec![3u8]]);
    }
}
