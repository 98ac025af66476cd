//! Just enough DER to read the integers of an RSA private key out of PKCS#8,
//! so a generated key can be written as a private JWK (RFC 7518 6.3.2).

/// Reads one TLV at the start of `input`: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;

/// The components of an RSA private key, big-endian without leading zeros.
#[derive(Debug)]
pub struct RsaComponents {
    /// Modulus, public exponent, private exponent, primes, CRT exponents and coefficient.
    pub n: Vec<u8>,
    /// Public exponent.
    pub e: Vec<u8>,
    /// Private exponent.
    pub d: Vec<u8>,
    /// First prime.
    pub p: Vec<u8>,
    /// Second prime.
    pub q: Vec<u8>,
    /// d mod (p-1).
    pub dp: Vec<u8>,
    /// d mod (q-1).
    pub dq: Vec<u8>,
    /// q^-1 mod p.
    pub qi: Vec<u8>,
}

/// Parses a PKCS#8 `PrivateKeyInfo` holding a PKCS#1 `RSAPrivateKey`.
pub fn rsa_from_pkcs8(der: &[u8]) -> Option<RsaComponents> {
    let (tag, info, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _version, rest) = tlv(info)?; // INTEGER 0
    let (_, _algorithm, rest) = tlv(rest)?; // AlgorithmIdentifier
    let (tag, key, _) = tlv(rest)?;
    if tag != OCTET_STRING {
        return None;
    }
    let (tag, fields, _) = tlv(key)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut ints = Vec::new();
    let mut rest = fields;
    while !rest.is_empty() && ints.len() < 9 {
        let (tag, value, next) = tlv(rest)?;
        if tag != INTEGER {
            return None;
        }
        let start = value.iter().position(|&b| b != 0).unwrap_or(value.len().saturating_sub(1));
        ints.push(value[start..].to_vec());
        rest = next;
    }
    if ints.len() != 9 {
        return None;
    }
    let mut it = ints.into_iter().skip(1);
    let mut next = || it.next().expect("nine integers");
    Some(RsaComponents { n: next(), e: next(), d: next(), p: next(), q: next(), dp: next(), dq: next(), qi: next() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        assert!(rsa_from_pkcs8(&[]).is_none());
        assert!(rsa_from_pkcs8(&[0x30, 0x05, 1, 2]).is_none());
    }
}
