//! A writer of the cpio `newc` format (what the kernel unpacks as an initramfs).
//!
//! Each entry: the 6-byte magic `070701`, thirteen 8-digit hex fields (ino, mode, uid, gid,
//! nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize including the
//! NUL, check), the NUL-terminated name padded to a multiple of 4 (counting the 110-byte
//! header), then the data padded to a multiple of 4. The archive ends with `TRAILER!!!`.
//! The kernel does not create missing parent directories, so [`CpioWriter`] emits every
//! parent directory before the first entry below it.

use std::collections::BTreeSet;

/// The `newc` magic.
pub const MAGIC: &[u8; 6] = b"070701";
/// Header length: magic + 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 110;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Builds a `newc` archive in memory. Paths are relative to the archive root (`bin/sh`; a
/// leading `/` is stripped).
#[derive(Debug, Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    dirs: BTreeSet<String>,
    names: BTreeSet<String>,
    next_ino: u32,
}

fn normalize(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        CpioWriter {
            next_ino: 1,
            ..Default::default()
        }
    }

    /// Whether `path` was already added (file, link or directory).
    pub fn contains(&self, path: &str) -> bool {
        let p = normalize(path);
        self.names.contains(&p) || self.dirs.contains(&p)
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(MAGIC);
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    fn parents(&mut self, path: &str) {
        let mut at = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if self.dirs.insert(at.clone()) {
                let name = at.clone();
                self.entry(&name, S_IFDIR | 0o755, &[]);
            }
        }
    }

    /// A directory (and its parents), mode bits `perm`.
    pub fn dir(&mut self, path: &str, perm: u32) {
        let p = normalize(path);
        if p.is_empty() || self.dirs.contains(&p) {
            return;
        }
        self.parents(&p);
        self.dirs.insert(p.clone());
        self.entry(&p, S_IFDIR | (perm & 0o7777), &[]);
    }

    /// A regular file with `data`, mode bits `perm`. A path added twice keeps the first.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        let p = normalize(path);
        if !self.names.insert(p.clone()) {
            return;
        }
        self.parents(&p);
        self.entry(&p, S_IFREG | (perm & 0o7777), data);
    }

    /// A symbolic link `path -> target`. A path added twice keeps the first.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let p = normalize(path);
        if !self.names.insert(p.clone()) {
            return;
        }
        self.parents(&p);
        self.entry(&p, S_IFLNK | 0o777, target.as_bytes());
    }

    /// The finished archive (with its trailer).
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        // The kernel reads the archive in 512-byte blocks, as cpio writes it.
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

/// One entry read back from an archive (for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    /// Inode number.
    pub ino: u32,
    /// File type and permission bits.
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Name as stored.
    pub name: String,
    /// Contents (a link's target for symlinks).
    pub data: Vec<u8>,
}

/// Parses a `newc` archive up to its trailer.
pub fn parse(mut buf: &[u8]) -> Result<Vec<CpioEntry>, String> {
    let mut entries = Vec::new();
    let mut offset = 0usize;
    loop {
        if buf.len() < HEADER_LEN || &buf[..6] != MAGIC {
            return Err(format!("no newc header at offset {offset}"));
        }
        let field = |i: usize| -> Result<u32, String> {
            let text = std::str::from_utf8(&buf[6 + i * 8..6 + (i + 1) * 8])
                .map_err(|e| format!("field {i} at {offset}: {e}"))?;
            u32::from_str_radix(text, 16).map_err(|e| format!("field {i} at {offset}: {e}"))
        };
        let (ino, mode, nlink, size, namesize) =
            (field(0)?, field(1)?, field(4)?, field(6)?, field(11)?);
        let name_end = HEADER_LEN + namesize as usize;
        let name_bytes = buf
            .get(HEADER_LEN..name_end - 1)
            .ok_or_else(|| format!("name past the end at {offset}"))?;
        if buf.get(name_end - 1) != Some(&0) {
            return Err(format!("name at {offset} is not NUL-terminated"));
        }
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let data_start = (name_end + 3) & !3;
        let data_end = data_start + size as usize;
        let data = buf
            .get(data_start..data_end)
            .ok_or_else(|| format!("data of {name} past the end"))?
            .to_vec();
        let next = (data_end + 3) & !3;
        if name == "TRAILER!!!" {
            return Ok(entries);
        }
        entries.push(CpioEntry {
            ino,
            mode,
            nlink,
            name,
            data,
        });
        offset += next;
        buf = buf.get(next..).ok_or("truncated archive")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_newc_header_fields_parse_back() {
        let mut w = CpioWriter::new();
        w.file("/usr/bin/tool", 0o755, b"hello");
        w.symlink("bin/sh", "busybox");
        w.dir("run", 0o755);
        w.file("usr/bin/tool", 0o644, b"ignored duplicate");
        let archive = w.finish();
        assert_eq!(archive.len() % 512, 0);
        assert_eq!(&archive[..6], MAGIC);
        // First header: the directory `usr` (a parent, emitted first), ino 1.
        assert_eq!(&archive[6..14], b"00000001");
        assert_eq!(&archive[14..22], b"000041ed");
        assert_eq!(&archive[94..102], b"00000004"); // namesize "usr\0"
        assert_eq!(&archive[110..114], b"usr\0");

        let entries = parse(&archive).expect("parses");
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["usr", "usr/bin", "usr/bin/tool", "bin", "bin/sh", "run"]
        );
        let tool = &entries[2];
        assert_eq!(tool.mode, 0o100755);
        assert_eq!(tool.nlink, 1);
        assert_eq!(tool.data, b"hello");
        let sh = &entries[4];
        assert_eq!(sh.mode, 0o120777);
        assert_eq!(sh.data, b"busybox");
        assert_eq!(entries[5].mode, 0o040755);
        assert_eq!(entries[5].nlink, 2);
        let inos: BTreeSet<u32> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inos.len(), entries.len(), "inode numbers are unique");
    }

    #[test]
    fn cpio_data_and_names_are_four_byte_aligned() {
        for len in 0..9 {
            let mut w = CpioWriter::new();
            let data = vec![b'x'; len];
            w.file(&"n".repeat(len + 1), 0o600, &data);
            w.file("after", 0o600, b"z");
            let entries = parse(&w.finish()).expect("parses");
            assert_eq!(entries[0].data, data);
            assert_eq!(entries[1].name, "after");
            assert_eq!(entries[1].data, b"z");
        }
    }
}
