//! Reading a file the host was pointed at — stack.toml, `.env`, stack.lock,
//! a plugin's `.wasm`, a compose file — as data from outside: only a
//! regular file, at most a limit, and never blocking. A container with a
//! writable bind of the project folder can put a FIFO, a device or a link
//! to `/dev/zero` in a file's place; such a file is refused with a message
//! that says so, not read forever.

use std::{
    fs::OpenOptions,
    io::{Error, ErrorKind, Read},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

/// The bytes of the regular file at `path` (links followed), if it holds
/// at most `limit` of them.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; the type is
    // checked on what was opened, so a swap after a check cannot slip by.
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a folder"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(Error::new(ErrorKind::InvalidInput, format!("it is {what}, not a regular file")));
    }
    let too_big = || Error::new(ErrorKind::InvalidData, format!("it is larger than {}, the limit for this file", size(limit)));
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded again while reading: the file may grow after the check.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The same, as UTF-8 text.
pub fn read_regular_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, limit)?).map_err(|_| Error::new(ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// `limit` for people: "16 MiB", "512 KiB".
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Text files a person writes (stack.toml, `.env`, compose files, stack.lock):
/// larger than this is not one.
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "hello").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"hello");
        assert!(read_regular(&file, 4).unwrap_err().to_string().contains("larger than 4 bytes"));
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        // Would block for ever if opened without O_NONBLOCK.
        assert!(read_regular(&fifo, 5).unwrap_err().to_string().contains("a FIFO"));
        assert!(read_regular(Path::new("/dev/zero"), 5).unwrap_err().to_string().contains("a device"));
        assert!(read_regular(dir.path(), 5).unwrap_err().to_string().contains("a folder"));
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("link")).unwrap();
        assert!(read_regular(&dir.path().join("link"), 5).unwrap_err().to_string().contains("a device"));
    }
}
