//! A minimal writer of `newc` cpio archives, the format Linux unpacks as its initramfs.
//!
//! The archive is left uncompressed: Linux accepts a plain cpio as initramfs, and skipping gzip keeps the
//! guest from spending (emulated, slow) boot time on decompression, so the boot figure is the kernel's.

/// File-type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Builds an archive entry by entry; [`Archive::finish`] adds the trailer.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory (parents must be added first, as the kernel creates entries in order).
    pub fn directory(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[]);
    }

    /// A regular file with permission bits `mode` (e.g. `0o755`).
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (mode & 0o7777), 1, (0, 0), data);
    }

    /// A character device node.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[]);
    }

    /// Adds the `TRAILER!!!` entry and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.entry_raw("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.bytes
    }

    fn entry(&mut self, path: &str, mode: u32, links: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        // Archive names are relative ("bin/busybox"); the kernel unpacks them under "/".
        self.entry_raw(path.trim_start_matches('/'), mode, links, rdev, data);
    }

    fn entry_raw(&mut self, name: &str, mode: u32, links: u32, (rdev_major, rdev_minor): (u32, u32), data: &[u8]) {
        let fields = [
            self.next_inode,
            mode,
            0, // uid: root
            0, // gid: root
            links,
            0, // mtime: fixed, so the archive is reproducible
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev_major,
            rdev_minor,
            name.len() as u32 + 1, // with the NUL
            0,                     // check: unused by newc
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Header plus name, and the data, each end on a 4-byte boundary.
    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: name, mode, (rdev major, minor), data.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads an archive back, checking the layout on the way.
    fn read(bytes: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(at % 4, 0, "entries start 4-byte aligned");
            assert_eq!(&bytes[at..at + 6], b"070701");
            let field = |index: usize| {
                let start = at + 6 + index * 8;
                u32::from_str_radix(std::str::from_utf8(&bytes[start..start + 8]).expect("ascii"), 16).expect("hex")
            };
            let (mode, size, rdev, name_len) = (field(1), field(6) as usize, (field(9), field(10)), field(11) as usize);
            let name_start = at + 110;
            assert_eq!(bytes[name_start + name_len - 1], 0, "name ends in NUL");
            let name = String::from_utf8(bytes[name_start..name_start + name_len - 1].to_vec()).expect("utf-8");
            let data_start = (name_start + name_len).next_multiple_of(4);
            let data = bytes[data_start..data_start + size].to_vec();
            at = (data_start + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(at, bytes.len(), "nothing after the trailer");
                return entries;
            }
            entries.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn entries_round_trip_with_newc_layout() {
        let mut archive = Archive::new();
        archive.directory("/bin");
        archive.file("/bin/tool", 0o755, b"hello");
        archive.file("/init", 0o755, b"#!/bin/sh\n");
        archive.char_device("/dev/console", 0o600, 5, 1);
        archive.file("/empty", 0o644, b"");
        let bytes = archive.finish();
        let entries = read(&bytes);
        let names: Vec<&str> = entries.iter().map(|entry| entry.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/tool", "init", "dev/console", "empty"]);
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!((entries[1].1, entries[1].3.as_slice()), (0o100755, b"hello".as_slice()));
        assert_eq!((entries[3].1, entries[3].2), (0o020600, (5, 1)));
        assert!(entries[4].3.is_empty());
    }

    #[test]
    fn inode_numbers_are_distinct() {
        let mut archive = Archive::new();
        archive.file("a", 0o644, b"1");
        archive.file("b", 0o644, b"2");
        let bytes = archive.finish();
        let inode = |offset: usize| &bytes[offset + 6..offset + 14];
        let second = (110 + 2usize).next_multiple_of(4) + 4;
        assert_ne!(inode(0), inode(second));
    }
}
