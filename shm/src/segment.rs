//! One anonymous shared mapping (`mmap(MAP_SHARED | MAP_ANONYMOUS)`), created before the
//! first fork so that every child inherits it at the same address. It is never unmapped:
//! `Segment` has no `Drop` (children must not unmap it, and the attendant keeps it until
//! exit).

use std::io;

/// A shared anonymous mapping: base address and length (a multiple of the page size).
#[repr(C)]
#[derive(Debug)]
pub struct Segment {
    base: *mut u8,
    len: usize,
}

impl Segment {
    /// Maps `len` bytes (rounded up to the page size) of zeroed shared memory.
    pub fn create(len: usize) -> io::Result<Segment> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "shm size is 0"));
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = if page > 0 { page as usize } else { 4096 };
        let len = len
            .checked_add(page - 1)
            .map(|l| l / page * page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "shm size too big"))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice; it aliases
        // no existing Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Transparent huge pages where the system allows them for shared memory
        // (`/sys/kernel/mm/transparent_hugepage/shmem_enabled` = advise or always): a
        // table of a million contacts or 200,000 transactions otherwise pays a TLB miss
        // on most accesses. Elsewhere the advice is a no-op, and a failure costs nothing.
        // SAFETY: advice over exactly the mapping just created; it changes no contents.
        let _ = unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
        Ok(Segment {
            base: p.cast(),
            len,
        })
    }

    /// First byte of the mapping (page-aligned).
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a segment has at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `addr` lies inside the mapping.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base as usize && addr < self.base as usize + self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_zeroed_and_shared_across_fork() {
        let s = Segment::create(10_000).unwrap();
        assert!(s.len() >= 10_000 && s.len().is_multiple_of(4096));
        // SAFETY: the mapping is s.len() bytes, readable and writable.
        let bytes = unsafe { std::slice::from_raw_parts_mut(s.base(), s.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
        // SAFETY: fork in a test; the child only writes a byte and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: the mapping (>= 10_000 bytes) is inherited at the same address, so byte
            // 100 is inside it.
            let byte = unsafe { s.base().add(100) };
            // SAFETY: `byte` is in the writable mapping; `bytes` is not used in the child.
            unsafe { *byte = 42 };
            // SAFETY: the child leaves at once, without running any of the parent's code
            // (no destructors, no test-harness cleanup).
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // SAFETY: byte 100 is inside the mapping (>= 10_000 bytes long).
        let byte = unsafe { s.base().add(100) };
        // SAFETY: reading a byte of the mapping, written by the child, which has exited;
        // volatile because the write happened outside this process's view of the program.
        assert_eq!(unsafe { std::ptr::read_volatile(byte) }, 42);
    }
}
