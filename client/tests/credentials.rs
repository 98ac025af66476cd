//! Credentials: the default `kid` of a PEM key is its RFC 7638 thumbprint (CLI-005).

use bulkmock_client::Credentials;
use bulkmock_server::{ClientKey, KeyAlg};

#[test]
fn the_pem_thumbprint_is_the_kid_bulkmock_keys_writes() {
    for alg in [KeyAlg::Rs384, KeyAlg::Es384] {
        let key = ClientKey::generate(alg).unwrap();
        assert_eq!(Credentials::pem_thumbprint(key.private_pem.as_bytes()).unwrap(), key.kid, "{alg:?}");
    }
    assert!(Credentials::pem_thumbprint(b"not a key").is_err());
}
