//! The echo server's protocol, decoded from arbitrary bytes with postcard.
//!
//! What decodes must encode back to a message that decodes to the same
//! value (postcard may accept non-canonical varints, so the bytes
//! themselves need not match).

use echo_api::{Reply, Request};

/// `echo-request`: the input as a request, and as a reply.
pub fn echo(data: &[u8]) {
    if let Ok(request) = postcard::from_bytes::<Request<'_>>(data) {
        let bytes = postcard::to_stdvec(&request).expect("a decoded request encodes");
        assert_eq!(postcard::from_bytes::<Request<'_>>(&bytes).ok(), Some(request));
    }
    if let Ok(reply) = postcard::from_bytes::<Reply<'_>>(data) {
        let bytes = postcard::to_stdvec(&reply).expect("a decoded reply encodes");
        assert_eq!(postcard::from_bytes::<Reply<'_>>(&bytes).ok(), Some(reply));
    }
}
