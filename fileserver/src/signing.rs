//! Short-lived signed download links: `?exp=<unix seconds>&sig=<hex HMAC-SHA256>` over
//! `"<file id>\n<exp>"`. Pure: the caller passes the time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Why a signed link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// The signature does not match the file and expiry (tampered, or another key).
    BadSignature,
    /// The signature is right but the link is past `exp`.
    Expired { exp: i64 },
}

/// Signs and checks links with one key. Every file server of a deployment needs the same key
/// for a link made on one to work on another.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl LinkSigner {
    pub fn new(key: &[u8]) -> Self {
        LinkSigner { key: key.to_vec() }
    }

    /// A random key, for a single process with no configured one.
    pub fn random() -> Self {
        LinkSigner { key: rand::random::<[u8; 32]>().to_vec() }
    }

    fn mac(&self, id: Uuid, exp: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(format!("{id}\n{exp}").as_bytes());
        mac
    }

    /// The lower-case hex signature of `id` until `exp`.
    pub fn sign(&self, id: Uuid, exp: i64) -> String {
        hex::encode(self.mac(id, exp).finalize().into_bytes())
    }

    /// The query string of a link to `id` valid until `exp`.
    pub fn query(&self, id: Uuid, exp: i64) -> String {
        format!("exp={exp}&sig={}", self.sign(id, exp))
    }

    /// Checks `sig` (in constant time) and then `exp` against `now` (unix seconds). `exp` is
    /// the raw query value: a malformed one cannot have been signed by us.
    pub fn verify(&self, id: Uuid, exp: &str, sig: &str, now: i64) -> Result<(), LinkError> {
        let exp: i64 = exp.parse().map_err(|_| LinkError::BadSignature)?;
        let sig = hex::decode(sig).map_err(|_| LinkError::BadSignature)?;
        self.mac(id, exp).verify_slice(&sig).map_err(|_| LinkError::BadSignature)?;
        if now >= exp {
            return Err(LinkError::Expired { exp });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_link_works_until_it_expires() {
        let signer = LinkSigner::new(b"0123456789abcdef0123456789abcdef");
        let id = Uuid::new_v4();
        let sig = signer.sign(id, 1000);
        assert_eq!(sig.len(), 64);
        assert_eq!(signer.verify(id, "1000", &sig, 999), Ok(()));
        assert_eq!(signer.verify(id, "1000", &sig, 1000), Err(LinkError::Expired { exp: 1000 }));
    }

    #[test]
    fn tampering_with_anything_breaks_the_signature() {
        let signer = LinkSigner::new(b"0123456789abcdef0123456789abcdef");
        let id = Uuid::new_v4();
        let sig = signer.sign(id, 1000);
        assert_eq!(signer.verify(id, "2000", &sig, 0), Err(LinkError::BadSignature), "extended expiry");
        assert_eq!(signer.verify(Uuid::new_v4(), "1000", &sig, 0), Err(LinkError::BadSignature), "other file");
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(signer.verify(id, "1000", &flipped, 0), Err(LinkError::BadSignature));
        assert_eq!(signer.verify(id, "1000", "zz", 0), Err(LinkError::BadSignature));
        assert_eq!(signer.verify(id, "soon", &sig, 0), Err(LinkError::BadSignature));
        let other = LinkSigner::new(b"another key another key another k");
        assert_eq!(other.verify(id, "1000", &sig, 0), Err(LinkError::BadSignature));
    }
}
