//! `bulkmock keys`: write a new client key pair.

use std::path::PathBuf;

use bulkmock_server::{ClientKey, KeyAlg};
use clap::Args;

/// Flags of `bulkmock keys`.
#[derive(Args, Debug)]
pub struct KeysArgs {
    /// RS384 or ES384.
    #[arg(long, default_value = "ES384")]
    alg: KeyAlg,
    /// Folder to write private.pem, private.jwk.json and jwks.json into.
    #[arg(long)]
    out: PathBuf,
}

/// Generates and writes the key pair.
pub fn run(args: KeysArgs) -> Result<(), String> {
    let key = ClientKey::generate(args.alg).map_err(|e| e.to_string())?;
    let pem = key.write(&args.out).map_err(|e| e.to_string())?;
    println!("{} key, kid {}", key.alg.name(), key.kid);
    println!("  private key (PEM): {}", pem.display());
    println!("  private key (JWK): {}", args.out.join("private.jwk.json").display());
    println!("  public JWKS:       {}", args.out.join("jwks.json").display());
    Ok(())
}
