//! The build tar (`config` + `context/`), written to a file and signed by reading it back in constant memory.

use std::io::Read;
use std::path::Path;

use shared::build::{BuildConfig, CONFIG_ENTRY, CONTEXT_DIR};

/// Writes `config` and the folder `context` as `context/` into a tar at `out`.
pub fn write_build_tar(context: &Path, config: &BuildConfig, out: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::create(out)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    let json = serde_json::to_vec(config).expect("build configs serialise");
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    builder.append_data(&mut header, CONFIG_ENTRY, json.as_slice())?;
    builder.append_dir_all(CONTEXT_DIR, context)?;
    builder.into_inner()?.into_inner().map_err(std::io::Error::other)?;
    Ok(std::fs::metadata(out)?.len())
}

/// `sha256=<hex>` of the file at `path`, keyed with `secret`, read in 64 KiB chunks.
pub fn sign_file(path: &Path, secret: &[u8]) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut signer = shared::signature::StreamSigner::new(secret);
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(signer.finish());
        }
        signer.update(&buffer[..read]);
    }
}
