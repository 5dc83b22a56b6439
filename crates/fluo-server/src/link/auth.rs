//! The link's handshake: each side proves it knows the cluster's secret without sending it
//! (HMAC-SHA256 over the other side's fresh nonce, aws-lc-rs), the answer compared in
//! constant time.
//!
//! ```text
//! entry -> owner  {"hello":"fluo-link/1","node":ID,"nonce":NC,"to":TO,"boot":BOOT}
//! owner -> entry  {"nonce":NS,"mac":HMAC(secret, "fluo-link/1 owner" NC NS TO BOOT)}
//! entry -> owner  {"mac":HMAC(secret, "fluo-link/1 entry" NS NC ID TO BOOT)}
//! owner -> entry  {"ok":true}
//! ```
//!
//! `TO` and `BOOT` are the node the entry means to reach and its boot, as its record says;
//! the owner answers only a hello meant for itself in its current boot. So a handshake
//! cannot be relayed to another node, or to an earlier run of the same one, by whoever made
//! the entry connect to them (e.g. with a node record written to Redis).
//!
//! The owner speaks only after a well-formed hello, so a Kurento client that connects to the
//! link's port gets nothing back: its first message is not a hello and the connection ends.

use aws_lc_rs::{constant_time, hmac, rand};
use serde::{Deserialize, Serialize};

/// The protocol's name and version, in the hello and in every MAC.
pub(crate) const PROTOCOL: &str = "fluo-link/1";

/// Nonce bytes (hex on the wire).
const NONCE: usize = 32;

#[derive(Serialize, Deserialize)]
pub(crate) struct Hello {
    pub hello: String,
    pub node: String,
    pub nonce: String,
    pub to: String,
    pub boot: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Challenge {
    pub nonce: String,
    pub mac: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Proof {
    pub mac: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Welcome {
    pub ok: bool,
}

/// A fresh random nonce, hex.
pub(crate) fn nonce() -> String {
    let mut b = [0u8; NONCE];
    // The system's generator failing is not something to serve on: an all-zero nonce would
    // make the MACs replayable, so fall back to nothing usable (the handshake then fails).
    if rand::fill(&mut b).is_err() {
        return String::new();
    }
    hex(&b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The MAC of `parts` under `secret`, with `label` first, hex. Each part is preceded by its
/// length, so parts cannot be shifted into one another.
pub(crate) fn mac(secret: &[u8], label: &str, parts: &[&str]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    for p in std::iter::once(&label).chain(parts) {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p.as_bytes());
    }
    hex(ctx.sign().as_ref())
}

/// Whether `given` is the MAC `expected`, in constant time.
pub(crate) fn verify(expected: &str, given: &str) -> bool {
    constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes()).is_ok()
}

/// Whether `n` is a nonce as [`nonce`] makes them.
pub(crate) fn is_nonce(n: &str) -> bool {
    n.len() == NONCE * 2 && n.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The node a handshake is meant for: its id and boot.
pub(crate) struct Target<'a> {
    pub id: &'a str,
    pub boot: u64,
}

/// The owner's MAC over the entry's nonce `nc`, its own `ns` and the hello's target.
pub(crate) fn owner_mac(secret: &[u8], nc: &str, ns: &str, to: &Target<'_>) -> String {
    let boot = to.boot.to_string();
    mac(secret, "fluo-link/1 owner", &[nc, ns, to.id, &boot])
}

/// The entry's MAC over the owner's nonce `ns`, its own `nc`, its node id and the target.
pub(crate) fn entry_mac(secret: &[u8], ns: &str, nc: &str, node: &str, to: &Target<'_>) -> String {
    let boot = to.boot.to_string();
    mac(secret, "fluo-link/1 entry", &[ns, nc, node, to.id, &boot])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_depend_on_the_secret_the_role_and_every_part() {
        let (nc, ns) = (nonce(), nonce());
        assert!(is_nonce(&nc) && is_nonce(&ns) && nc != ns);
        let k = b"0123456789abcdef";
        let b = Target { id: "b", boot: 3 };
        let m = owner_mac(k, &nc, &ns, &b);
        assert_eq!(m.len(), 64);
        assert!(verify(&m, &owner_mac(k, &nc, &ns, &b)));
        assert!(!verify(&m, &owner_mac(b"0123456789abcdeX", &nc, &ns, &b)));
        assert!(!verify(&m, &owner_mac(k, &ns, &nc, &b)));
        assert!(!verify(&m, &entry_mac(k, &nc, &ns, "", &b)));
        // Meant for another node, or another boot of it: another MAC, both ways.
        for other in [Target { id: "c", boot: 3 }, Target { id: "b", boot: 4 }] {
            assert!(!verify(&m, &owner_mac(k, &nc, &ns, &other)));
            let e = entry_mac(k, &ns, &nc, "a", &b);
            assert!(!verify(&e, &entry_mac(k, &ns, &nc, "a", &other)));
        }
        // Lengths are part of the MAC: "ab"+"c" is not "a"+"bc".
        assert_ne!(mac(b"k", "l", &["ab", "c"]), mac(b"k", "l", &["a", "bc"]));
        assert!(!verify(&m, &m[..63]));
        assert!(!is_nonce("zz") && !is_nonce(&"g".repeat(64)));
    }
}
