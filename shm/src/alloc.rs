//! The shm allocator: boundary tags, segregated free lists, coalescing on free.
//!
//! Layout of a managed region (all offsets 16-aligned):
//!
//! ```text
//! [ Heap (rounded to 16) ][ hdr | payload ][ hdr | payload ] ... [ sentinel hdr ]
//! ```
//!
//! Every block has a 16-byte header `{ prev_size, size | USED }`: `size` is the payload size
//! (a multiple of 16, at least 16), `prev_size` the payload size of the physically previous
//! block (0 for the first block), so both neighbours are reachable in O(1). The sentinel at
//! the end is a used block of size 0. A free block keeps `next`/`prev` free-list links in its
//! payload.
//!
//! Free lists: exact classes for payloads 16..=16384 (one per 16 bytes, LIFO, every block in
//! the class fits), then one class per power of two above 16384 (first fit inside the class).
//! A two-level bitmap finds the first non-empty class at or above a request in a few
//! instructions. Invariants (checked by [`Heap::check`]): no two physically adjacent blocks
//! are free (free coalesces with both neighbours), every free block is in exactly the list
//! of its class, and a class's bitmap bit is set iff its list is non-empty.
//!
//! One [`FastLock`] inside the heap serialises alloc/free/realloc/stats (OpenSER's
//! `mem_lock`).

use std::cell::UnsafeCell;
use std::fmt::Write as _;
use std::ptr::{self, NonNull};

use crate::lock::FastLock;

/// Alignment of every payload (and granularity of sizes).
pub const ALIGN: usize = 16;
const HDR: usize = 16;
const MIN_PAYLOAD: usize = 16;
const USED: usize = 1;
const SIZE_MASK: usize = !(ALIGN - 1);
/// Largest payload with an exact size class (OpenSER's `F_MALLOC_OPTIMIZE`).
pub const SMALL_LIMIT: usize = 16384;
const NSMALL: usize = SMALL_LIMIT / ALIGN; // classes 0..1024: size = (c + 1) * 16
const SMALL_LOG2: u32 = 14; // log2(SMALL_LIMIT)
const NLARGE: usize = (usize::BITS - SMALL_LOG2) as usize; // one per power of two >= 2^14
/// Number of size classes.
pub const NCLASSES: usize = NSMALL + NLARGE;
const NWORDS: usize = NCLASSES.div_ceil(64);
const _: () = assert!(NWORDS <= 64);

/// Memory statistics (OpenSER's `shmem:*` statistics plus the largest free block).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Size of the managed region.
    pub total: usize,
    /// Sum of the payload sizes of allocated blocks.
    pub used: usize,
    /// `used` + block headers of allocated blocks + the heap header and end sentinel.
    pub real_used: usize,
    /// Peak of `real_used`.
    pub max_used: usize,
    /// `total - real_used` (free payloads plus their headers).
    pub free: usize,
    /// Number of free blocks.
    pub fragments: usize,
    /// Payload size of the biggest free block.
    pub largest_free: usize,
}

#[repr(C)]
struct Block {
    prev_size: usize,
    size: usize,
}

#[repr(C)]
struct FreeLinks {
    next: *mut Block,
    prev: *mut Block,
}

#[repr(C)]
struct State {
    total: usize,
    first: *mut Block,
    sentinel: *mut Block,
    used: usize,
    free_bytes: usize, // sum of (HDR + size) of free blocks
    max_used: usize,
    fragments: usize,
    summary: u64,
    bitmap: [u64; NWORDS],
    heads: [*mut Block; NCLASSES],
    counts: [u32; NCLASSES],
}

/// An allocator living at the start of the region it manages.
#[repr(C)]
pub struct Heap {
    lock: FastLock,
    state: UnsafeCell<State>,
}

// SAFETY: all access to `state` goes through `Heap::with`, under the heap's FastLock, which
// excludes every other process and thread (its compare_exchange admits one owner at a time,
// even between threads sharing a pid); `first`/`sentinel` are read without the lock but never
// change after `init`. So a `&Heap` may be shared and sent.
unsafe impl Sync for Heap {}
// SAFETY: as for Sync; the raw pointers inside point into the heap's own region.
unsafe impl Send for Heap {}

/// Bytes taken by the heap header at the start of the region.
pub const HEAP_HEADER: usize = size_of::<Heap>().next_multiple_of(ALIGN);

#[inline]
fn size_class(size: usize) -> usize {
    if size <= SMALL_LIMIT {
        size / ALIGN - 1
    } else {
        NSMALL + (size.ilog2() - SMALL_LOG2) as usize
    }
}

/// Rounds a request to a payload size; `None` on overflow.
#[inline]
fn round_request(size: usize) -> Option<usize> {
    let s = size.max(MIN_PAYLOAD).checked_add(ALIGN - 1)?;
    Some(s & SIZE_MASK)
}

// Block helpers. All take raw block pointers that the caller guarantees are block headers
// inside the heap's region (every function below is only called with the lock held).
//
// Every header lies at a 16-aligned address (the region is 16-aligned, the heap header and
// every block extent `HDR + size` are multiples of 16), so reads and writes through a valid
// header pointer are aligned; the heap lock excludes every other writer of the headers.

/// # Safety
/// `b` must be a block header inside the region.
#[inline]
unsafe fn bsize(b: *mut Block) -> usize {
    // SAFETY: caller guarantees `b` is a valid header.
    unsafe { (*b).size & SIZE_MASK }
}
/// # Safety
/// `b` must be a block header inside the region.
#[inline]
unsafe fn is_used(b: *mut Block) -> bool {
    // SAFETY: caller guarantees `b` is a valid header.
    unsafe { (*b).size & USED != 0 }
}
/// The whole size word of `b` (payload size and flag bits), for [`Heap::check`].
///
/// # Safety
/// `b` must be a block header inside the region.
#[inline]
unsafe fn size_word(b: *mut Block) -> usize {
    // SAFETY: caller guarantees `b` is a valid header.
    unsafe { (*b).size }
}
/// The payload size of the block physically before `b`, as recorded in `b`'s header.
///
/// # Safety
/// `b` must be a block header inside the region.
#[inline]
unsafe fn prev_size_word(b: *mut Block) -> usize {
    // SAFETY: caller guarantees `b` is a valid header.
    unsafe { (*b).prev_size }
}
/// # Safety
/// `b` must be a block header inside the region, not the sentinel.
#[inline]
unsafe fn next_block(b: *mut Block) -> *mut Block {
    // SAFETY: caller guarantees `b` is a valid header.
    let size = unsafe { bsize(b) };
    // SAFETY: the next header is HDR + size bytes further, still inside the region since the
    // sentinel ends it (`b` is not the sentinel), so the offset stays in the region's
    // allocation.
    unsafe { b.cast::<u8>().add(HDR + size).cast() }
}
/// # Safety
/// `b` must be a block header inside the region, not the first block.
#[inline]
unsafe fn prev_block(b: *mut Block) -> *mut Block {
    // SAFETY: caller guarantees `b` is a valid header.
    let prev_size = unsafe { prev_size_word(b) };
    // SAFETY: `b` is not the first block, so `prev_size` is the payload size of the
    // physically previous block, whose header is HDR + prev_size bytes before `b`, at or
    // after the first block: inside the region.
    unsafe { b.cast::<u8>().sub(HDR + prev_size).cast() }
}
/// # Safety
/// `b` must be a free (or being-freed) block header with at least 16 payload bytes.
#[inline]
unsafe fn links(b: *mut Block) -> *mut FreeLinks {
    // SAFETY: the payload follows the header and is at least MIN_PAYLOAD = 16 bytes.
    unsafe { b.cast::<u8>().add(HDR).cast() }
}
/// The next block in `b`'s free list (null at the end).
///
/// # Safety
/// `b` must be a free block header of the region that is in a free list.
#[inline]
unsafe fn link_next(b: *mut Block) -> *mut Block {
    // SAFETY: `b` is a free block header (caller), so it has a payload of >= 16 bytes.
    let l = unsafe { links(b) };
    // SAFETY: `l` is the 16-aligned start of `b`'s payload, which holds the links `insert`
    // wrote when `b` entered its list (it is still listed: caller).
    unsafe { (*l).next }
}
/// The previous block in `b`'s free list (null for the head).
///
/// # Safety
/// As [`link_next`].
#[inline]
unsafe fn link_prev(b: *mut Block) -> *mut Block {
    // SAFETY: `b` is a free block header (caller), so it has a payload of >= 16 bytes.
    let l = unsafe { links(b) };
    // SAFETY: `l` is the 16-aligned start of `b`'s payload, which holds the links `insert`
    // wrote when `b` entered its list (it is still listed: caller).
    unsafe { (*l).prev }
}
/// Sets the free-list successor of `b`.
///
/// # Safety
/// `b` must be a free (or being-inserted) block header of the region: its payload belongs to
/// the allocator, not to a user.
#[inline]
unsafe fn set_link_next(b: *mut Block, next: *mut Block) {
    // SAFETY: `b` is a free block header (caller), so it has a payload of >= 16 bytes.
    let l = unsafe { links(b) };
    // SAFETY: `l` is the 16-aligned start of `b`'s payload, in bounds, and no user owns that
    // payload (caller), so writing the link clobbers nothing live.
    unsafe { (*l).next = next };
}
/// Sets the free-list predecessor of `b`.
///
/// # Safety
/// As [`set_link_next`].
#[inline]
unsafe fn set_link_prev(b: *mut Block, prev: *mut Block) {
    // SAFETY: `b` is a free block header (caller), so it has a payload of >= 16 bytes.
    let l = unsafe { links(b) };
    // SAFETY: `l` is the 16-aligned start of `b`'s payload, in bounds, and no user owns that
    // payload (caller), so writing the link clobbers nothing live.
    unsafe { (*l).prev = prev };
}
/// Sets the size (and used flag) of `b` and the `prev_size` of its successor.
///
/// # Safety
/// `b` must be a block header whose new extent `HDR + size` ends at a header inside the region.
#[inline]
unsafe fn set_size(b: *mut Block, size: usize, used: bool) {
    // SAFETY: caller guarantees `b` is a valid header.
    unsafe { (*b).size = size | if used { USED } else { 0 } };
    // SAFETY: `b`'s size word now holds `size`, and the caller guarantees that HDR + size
    // bytes past `b` is a header inside the region (so `b` is not the sentinel).
    let next = unsafe { next_block(b) };
    // SAFETY: `next` is that header: in bounds and 16-aligned; it records `b`'s new size.
    unsafe { (*next).prev_size = size };
}

impl State {
    /// # Safety
    /// `b` is a free block header of this heap, not in any list.
    unsafe fn insert(&mut self, b: *mut Block) {
        // SAFETY: `b` is a block header of this heap (caller).
        let size = unsafe { bsize(b) };
        let c = size_class(size);
        let head = self.heads[c];
        // SAFETY: `b` is free and in no list (caller), so its payload belongs to the
        // allocator; it becomes the head, its successor the old head.
        unsafe { set_link_next(b, head) };
        // SAFETY: same block, same reason; a list head has no predecessor.
        unsafe { set_link_prev(b, ptr::null_mut()) };
        if !head.is_null() {
            // SAFETY: a non-null list head is a free block of this heap (list invariant, kept
            // under the heap lock, which `&mut self` implies), so its payload holds links.
            unsafe { set_link_prev(head, b) };
        }
        self.heads[c] = b;
        self.counts[c] += 1;
        self.bitmap[c / 64] |= 1 << (c % 64);
        self.summary |= 1 << (c / 64);
        self.free_bytes += HDR + size;
        self.fragments += 1;
    }

    /// # Safety
    /// `b` is a free block header currently in the list of its class.
    unsafe fn unlink(&mut self, b: *mut Block) {
        // SAFETY: `b` is a block header of this heap (caller).
        let size = unsafe { bsize(b) };
        let c = size_class(size);
        // SAFETY: `b` is free and listed (caller), so its payload holds links.
        let l = unsafe { links(b) };
        // SAFETY: `l` is the 16-aligned start of `b`'s payload, where `insert` wrote both
        // links; `FreeLinks` is two raw pointers, so the bitwise copy is a plain read.
        let FreeLinks { next, prev } = unsafe { ptr::read(l) };
        if prev.is_null() {
            self.heads[c] = next;
        } else {
            // SAFETY: a non-null `prev` link names a free block listed in the same class
            // (list invariant, under the heap lock), whose payload holds links.
            unsafe { set_link_next(prev, next) };
        }
        if !next.is_null() {
            // SAFETY: a non-null `next` link names a free block listed in the same class
            // (list invariant, under the heap lock), whose payload holds links.
            unsafe { set_link_prev(next, prev) };
        }
        self.counts[c] -= 1;
        if self.heads[c].is_null() {
            self.bitmap[c / 64] &= !(1 << (c % 64));
            if self.bitmap[c / 64] == 0 {
                self.summary &= !(1 << (c / 64));
            }
        }
        self.free_bytes -= HDR + size;
        self.fragments -= 1;
    }

    /// First non-empty class >= `c`.
    fn find_class(&self, c: usize) -> Option<usize> {
        if c >= NCLASSES {
            return None;
        }
        let w = c / 64;
        let bits = self.bitmap[w] & (!0u64 << (c % 64));
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
        let higher = if w + 1 >= 64 {
            0
        } else {
            self.summary & (!0u64 << (w + 1))
        };
        if higher == 0 {
            return None;
        }
        let w = higher.trailing_zeros() as usize;
        Some(w * 64 + self.bitmap[w].trailing_zeros() as usize)
    }

    /// Finds and unlinks a free block with payload >= `need`.
    fn take_fit(&mut self, need: usize) -> Option<*mut Block> {
        let c = size_class(need);
        if c >= NSMALL && self.bitmap[c / 64] & (1 << (c % 64)) != 0 {
            // Large class: blocks may be smaller than `need`; first fit in the list.
            let mut b = self.heads[c];
            while !b.is_null() {
                // SAFETY: `b` is the head of list `c` or the `next` link of one of its members;
                // list members are free blocks of this heap (list invariant).
                if unsafe { bsize(b) } >= need {
                    // SAFETY: `b` is a free block currently in list `c`, the list of its class.
                    unsafe { self.unlink(b) };
                    return Some(b);
                }
                // SAFETY: `b` is still listed (it was not unlinked on this path).
                b = unsafe { link_next(b) };
            }
        }
        // Any block of a higher class fits; an exact small class fits exactly.
        let start = if c >= NSMALL { c + 1 } else { c };
        let k = self.find_class(start)?;
        let b = self.heads[k];
        // SAFETY: the bitmap bit of `k` is set, so its head is a free block of this heap.
        unsafe { self.unlink(b) };
        Some(b)
    }

    /// Shrinks used block `b` to `need` when the tail is big enough to be a block; the tail
    /// is freed (coalescing with a free successor).
    ///
    /// # Safety
    /// `b` is a used block of this heap with `bsize(b) >= need`, `need` rounded.
    unsafe fn split_used(&mut self, b: *mut Block, need: usize) {
        // SAFETY: `b` is a block header of this heap (caller).
        let size = unsafe { bsize(b) };
        if size - need < HDR + MIN_PAYLOAD {
            return;
        }
        // SAFETY: `need <= size - HDR - MIN_PAYLOAD`, so `b`'s new extent ends inside its old
        // one, at the spot where the tail's header goes: inside the region.
        unsafe { set_size(b, need, true) };
        self.used -= size - need;
        // SAFETY: `b` is a used block, not the sentinel; its size word now says `need`.
        let tail = unsafe { next_block(b) };
        let mut tail_size = size - need - HDR;
        // SAFETY: `tail` + HDR + `tail_size` is where `b`'s old extent ended: the header of
        // `b`'s old successor, inside the region.
        let after = unsafe { next_block_of_size(tail, tail_size) };
        // SAFETY: `after` is `b`'s old successor, a valid header (boundary-tag invariant).
        if !unsafe { is_used(after) } {
            // SAFETY: every free block header is in the list of its class (heap invariant;
            // callers have only unlinked blocks they merged into `b`, which are no longer
            // headers), so `after` is listed.
            unsafe { self.unlink(after) };
            // SAFETY: `after` is still a valid header (unlinking only touched list links).
            tail_size += HDR + unsafe { bsize(after) };
        }
        // SAFETY: `tail` lies inside `b`'s old extent; its new extent ends at `after` (free
        // successor not absorbed) or at `after`'s successor (absorbed): a header either way.
        unsafe { set_size(tail, tail_size, false) };
        // SAFETY: `tail` now is a free block header of this heap, in no list.
        unsafe { self.insert(tail) };
    }

    fn note_peak(&mut self) {
        let real = self.total - self.free_bytes;
        if real > self.max_used {
            self.max_used = real;
        }
    }

    fn largest_free(&self) -> usize {
        let mut top = None;
        for w in (0..NWORDS).rev() {
            if self.bitmap[w] != 0 {
                top = Some(w * 64 + 63 - self.bitmap[w].leading_zeros() as usize);
                break;
            }
        }
        let Some(c) = top else { return 0 };
        let mut best = 0;
        let mut b = self.heads[c];
        while !b.is_null() {
            // SAFETY: `b` is the head of list `c` or a `next` link of one of its members; list
            // members are free blocks of this heap.
            best = best.max(unsafe { bsize(b) });
            if c < NSMALL {
                break;
            }
            // SAFETY: `b` is a listed free block, so its payload holds its links.
            b = unsafe { link_next(b) };
        }
        best
    }

    fn stats(&self) -> MemStats {
        let real_used = self.total - self.free_bytes;
        MemStats {
            total: self.total,
            used: self.used,
            real_used,
            max_used: self.max_used,
            free: self.free_bytes,
            fragments: self.fragments,
            largest_free: self.largest_free(),
        }
    }
}

/// # Safety
/// `b` is a header position; `size` its (future) payload size within the region.
#[inline]
unsafe fn next_block_of_size(b: *mut Block, size: usize) -> *mut Block {
    // SAFETY: caller guarantees the block after `b` of payload `size` is inside the region.
    unsafe { b.cast::<u8>().add(HDR + size).cast() }
}

impl Heap {
    /// Builds a heap over `len` bytes at `region` and returns it (it lives at `region`).
    ///
    /// # Safety
    /// `region` must be 16-aligned, valid for reads and writes of `len` bytes for `'a`, and
    /// used by nothing else (but this heap) for `'a`. `len` must be at least
    /// [`Heap::min_region`].
    ///
    /// # Panics
    /// When `len < Heap::min_region()` or `region` is misaligned (start-up configuration
    /// errors).
    pub unsafe fn init<'a>(region: *mut u8, len: usize) -> &'a Heap {
        assert!(
            (region as usize).is_multiple_of(ALIGN),
            "shm heap region must be 16-aligned"
        );
        assert!(len >= Self::min_region(), "shm heap region too small");
        let len = len & SIZE_MASK;
        let heap = region.cast::<Heap>();
        // The region is aligned (checked) and valid for `len` >= HEAP_HEADER + 48 bytes
        // (checked); nothing else uses it (caller). The heap goes at its start, the blocks
        // after HEAP_HEADER, all inside the region.
        //
        // SAFETY: `heap` is the region's start, valid for HEAP_HEADER >= size_of::<Heap>()
        // bytes: projecting to a field stays in bounds and reads nothing.
        let lock = unsafe { ptr::addr_of_mut!((*heap).lock) };
        // SAFETY: `lock` is in bounds, aligned (the region is 16-aligned and `Heap` is
        // `repr(C)`) and unused by anyone else (caller); the write initialises it.
        unsafe { lock.write(FastLock::new()) };
        // SAFETY: as for `lock`: an in-bounds field projection that reads nothing.
        let st = UnsafeCell::raw_get(unsafe { ptr::addr_of!((*heap).state) });
        // SAFETY: `st` is in bounds and aligned for one `State`, which nobody else uses yet.
        unsafe { ptr::write_bytes(st, 0, 1) }; // null heads, zero counts/bitmaps
        // SAFETY: all-zero bytes are a valid `State` (integers, null raw pointers, integer
        // arrays), just written; this is the only reference to it until `init` returns.
        let state = unsafe { &mut *st };
        // SAFETY: HEAP_HEADER < `len`, so the first block's header is inside the region.
        let first = unsafe { region.add(HEAP_HEADER) }.cast::<Block>();
        // SAFETY: `len - HDR` >= HEAP_HEADER + HDR + MIN_PAYLOAD: the last header slot of the
        // (16-rounded) region, inside it.
        let sentinel = unsafe { region.add(len - HDR) }.cast::<Block>();
        let first_size = len - HEAP_HEADER - 2 * HDR;
        // SAFETY: `first` is a 16-aligned header slot inside the region (above).
        unsafe { (*first).prev_size = 0 };
        // SAFETY: `sentinel` is a 16-aligned header slot inside the region, after `first`.
        unsafe { (*sentinel).prev_size = first_size };
        // SAFETY: as above; the sentinel is a used block of size 0.
        unsafe { (*sentinel).size = USED };
        // SAFETY: `first` + HDR + `first_size` is `sentinel`, a header inside the region.
        unsafe { set_size(first, first_size, false) };
        state.total = len;
        state.first = first;
        state.sentinel = sentinel;
        // SAFETY: `first` is now a free block header of this heap spanning the whole region,
        // in no list (all heads are null).
        unsafe { state.insert(first) };
        state.max_used = len - state.free_bytes;
        // SAFETY: both fields of the heap are initialised and `state` is no longer used; the
        // region stays valid and reserved to this heap for `'a` (caller).
        unsafe { &*heap }
    }

    /// Smallest region [`Heap::init`] accepts.
    pub const fn min_region() -> usize {
        HEAP_HEADER + 2 * HDR + MIN_PAYLOAD
    }

    /// Runs `f` on the state with the heap lock held.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let _g = self.lock.lock();
        // SAFETY: the state is only ever accessed through this function, under the lock, so
        // this is the only live reference to it.
        let st = unsafe { &mut *self.state.get() };
        f(st)
    }

    /// The heap's lock (for `force_unlock_dead`).
    pub fn lock_ref(&self) -> &FastLock {
        &self.lock
    }

    /// Allocates `size` bytes (16-aligned). `None` when no free block is big enough.
    pub fn alloc(&self, size: usize) -> Option<NonNull<u8>> {
        let need = round_request(size)?;
        if need > isize::MAX as usize {
            return None;
        }
        self.with(|st| {
            let b = st.take_fit(need)?;
            // SAFETY: `b` is a block header of this heap, just unlinked from its list.
            let size = unsafe { bsize(b) };
            // SAFETY: the extent of `b` is unchanged (only the used flag is set), so it still
            // ends at `b`'s successor's header.
            unsafe { set_size(b, size, true) };
            st.used += size;
            // SAFETY: `b` is now a used block of this heap; `take_fit` returned it with
            // `bsize(b) >= need`, and `need` is rounded.
            unsafe { st.split_used(b, need) };
            st.note_peak();
            // SAFETY: the payload starts HDR bytes after `b`'s header, inside `b`'s extent
            // (`b` is not the sentinel: free lists never hold it).
            NonNull::new(unsafe { b.cast::<u8>().add(HDR) })
        })
    }

    /// Header of the block whose payload is `p`, if `p` looks like one of ours.
    fn block_of(&self, p: NonNull<u8>) -> Option<*mut Block> {
        let st = self.state.get();
        // SAFETY: reading `first`, which never changes after init (no write can race).
        let first = unsafe { (*st).first } as usize;
        // SAFETY: reading `sentinel`, which never changes after init (no write can race).
        let sentinel = unsafe { (*st).sentinel } as usize;
        let a = p.as_ptr() as usize;
        if !a.is_multiple_of(ALIGN) || a < first + HDR || a + MIN_PAYLOAD > sentinel {
            return None;
        }
        Some(p.as_ptr().wrapping_sub(HDR).cast())
    }

    /// Frees a block, coalescing with free neighbours. Pointers outside the heap and blocks
    /// not marked used (double free) are ignored.
    ///
    /// # Safety
    /// `p` must have been returned by this heap's `alloc`/`realloc` and not freed since; the
    /// memory is not used afterwards.
    pub unsafe fn free(&self, p: NonNull<u8>) {
        let Some(b) = self.block_of(p) else { return };
        self.with(|st| {
            // `b` is the header of a block of this heap (caller's contract); its neighbours
            // are reachable through the boundary tags.
            //
            // SAFETY: `b` is a header inside the region (caller; `block_of` checked range and
            // alignment).
            if !unsafe { is_used(b) } {
                return; // double free: ignore rather than corrupt the lists
            }
            let mut b = b;
            // SAFETY: `b` is a valid header (above).
            let mut size = unsafe { bsize(b) };
            // Clear the flag first: if `b` merges into its predecessor, its stale header
            // (left inside the merged payload) must not look like a live block, so that a
            // double free of `p` is still caught.
            //
            // SAFETY: `b` is a valid header; the heap lock is held, and the block's owner
            // gave it up (caller), so nobody else touches its size word.
            unsafe { (*b).size = size };
            st.used -= size;
            // SAFETY: `b` is a valid header and not the sentinel (`block_of` requires its
            // payload to end at or before the sentinel).
            let next = unsafe { next_block(b) };
            // SAFETY: `next` is `b`'s successor: a valid header, at most the sentinel.
            if !unsafe { is_used(next) } {
                // SAFETY: `next` is a free block header, so it is in the list of its class
                // (heap invariant on entry).
                unsafe { st.unlink(next) };
                // SAFETY: `next` is still a valid header (unlinking only touched links).
                size += HDR + unsafe { bsize(next) };
            }
            if b != st.first {
                // SAFETY: `b` is a valid header and not the first block.
                let prev = unsafe { prev_block(b) };
                // SAFETY: `prev` is `b`'s predecessor, a valid header (boundary tags).
                if !unsafe { is_used(prev) } {
                    // SAFETY: `prev` is a free block header, so it is listed in its class
                    // (heap invariant; `next`, just unlinked, is a different block).
                    unsafe { st.unlink(prev) };
                    // SAFETY: `prev` is still a valid header (unlinking only touched links).
                    size += HDR + unsafe { bsize(prev) };
                    b = prev;
                }
            }
            // SAFETY: `b` + HDR + `size` is the end of the merged extent: the header after
            // `next` if it was absorbed, else `next` itself; inside the region either way.
            unsafe { set_size(b, size, false) };
            // SAFETY: `b` is now a free block header spanning the merged extent, in no list
            // (its parts were either used or just unlinked).
            unsafe { st.insert(b) };
        })
    }

    /// Usable payload size of an allocated block (>= the requested size).
    ///
    /// # Safety
    /// `p` must be a live allocation of this heap.
    pub unsafe fn usable_size(&self, p: NonNull<u8>) -> usize {
        match self.block_of(p) {
            // SAFETY: `b` is the header of a live block (caller's contract); the size word of
            // a used block is only changed by its owner's realloc.
            Some(b) => unsafe { bsize(b) },
            None => 0,
        }
    }

    /// Resizes a block. Shrinks in place; grows in place when the next block is free and
    /// big enough; else merges with a free predecessor (and successor), moving the payload
    /// down; otherwise allocates, copies and frees. `None` (old block untouched) when there
    /// is no room (or `p` is not a live block of this heap).
    ///
    /// # Safety
    /// `p` must be a live allocation of this heap; on `Some(q)` with `q != p` the old pointer
    /// is freed and must not be used.
    pub unsafe fn realloc(&self, p: NonNull<u8>, new_size: usize) -> Option<NonNull<u8>> {
        let need = round_request(new_size)?;
        let b = self.block_of(p)?;
        let in_place = self.with(|st| {
            // `b` is the header of a live used block (caller); its neighbours are valid
            // headers (boundary tags).
            //
            // SAFETY: `b` is a header inside the region (caller; `block_of` checked range and
            // alignment).
            let size = unsafe { bsize(b) };
            // SAFETY: as above.
            if !unsafe { is_used(b) } {
                return Ok(None); // freed pointer: refuse
            }
            if need <= size {
                // SAFETY: `b` is a used block of this heap, `bsize(b) >= need`, `need` rounded.
                unsafe { st.split_used(b, need) };
                return Ok(Some(p));
            }
            // SAFETY: `b` is a valid header and not the sentinel (`block_of` requires its
            // payload to end at or before the sentinel).
            let next = unsafe { next_block(b) };
            // SAFETY: `next` is `b`'s successor: a valid header, at most the sentinel.
            let next_free = if unsafe { is_used(next) } {
                0
            } else {
                // SAFETY: as above.
                HDR + unsafe { bsize(next) }
            };
            if size + next_free >= need {
                // `need > size`, so `next_free != 0`: `next` is free.
                //
                // SAFETY: `next` is a free block header, listed in its class (heap invariant
                // on entry).
                unsafe { st.unlink(next) };
                // SAFETY: `b` + HDR + size + next_free is where `next`'s extent ended: the
                // header after `next`, inside the region (`next` is free, so not the sentinel).
                unsafe { set_size(b, size + next_free, true) };
                st.used += next_free;
                // SAFETY: `b` is a used block with `bsize(b) = size + next_free >= need`.
                unsafe { st.split_used(b, need) };
                st.note_peak();
                return Ok(Some(p));
            }
            // Merge with a free predecessor (and successor): move the payload down.
            if b != st.first {
                // SAFETY: `b` is a valid header and not the first block.
                let prev = unsafe { prev_block(b) };
                // SAFETY: `prev` is `b`'s predecessor, a valid header (boundary tags).
                let prev_free = if unsafe { is_used(prev) } {
                    0
                } else {
                    // SAFETY: as above.
                    HDR + unsafe { bsize(prev) }
                };
                if prev_free != 0 && size + prev_free + next_free >= need {
                    // SAFETY: `prev` is a free block header, listed in its class (heap
                    // invariant on entry).
                    unsafe { st.unlink(prev) };
                    if next_free != 0 {
                        // SAFETY: `next` is a free block header, listed in its class, and a
                        // different block from `prev` (they lie on either side of `b`).
                        unsafe { st.unlink(next) };
                    }
                    // SAFETY: `prev`'s payload starts HDR bytes after its header, inside the
                    // region (`prev` is a free block, not the sentinel).
                    let dst = unsafe { prev.cast::<u8>().add(HDR) };
                    // Overlapping move (dst < src): before any header is written inside
                    // the merged extent.
                    //
                    // SAFETY: `p` is valid for `size` bytes (the caller's live block) and
                    // `dst` for the merged payload of `size + prev_free + next_free` >= `size`
                    // bytes (blocks just unlinked or owned by the caller, ours under the
                    // lock); `ptr::copy` allows the overlap.
                    unsafe { ptr::copy(p.as_ptr(), dst, size) };
                    // `prev`'s header heads the merged block; `b`'s header becomes
                    // payload: payload = prev's (HDR + size) + size + next's (HDR + size).
                    let total = size + prev_free + next_free;
                    // SAFETY: `prev` + HDR + `total` is the end of the merged extent: the
                    // header after `next` if it was absorbed, else `next`: inside the region.
                    unsafe { set_size(prev, total, true) };
                    st.used += total - size;
                    // SAFETY: `prev` is now a used block with `bsize(prev) = total >= need`.
                    unsafe { st.split_used(prev, need) };
                    st.note_peak();
                    return Ok(NonNull::new(dst));
                }
            }
            Err(size)
        });
        let old_size = match in_place {
            Ok(r) => return r,
            Err(s) => s,
        };
        let q = self.alloc(new_size)?;
        // SAFETY: `q` is a fresh block of >= new_size > old_size bytes, disjoint from the
        // live block `p` of `old_size` bytes (the heap never hands out overlapping blocks).
        unsafe { ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), old_size) };
        // SAFETY: `p` is a live allocation of this heap (caller) whose contents now live in
        // `q`; the caller does not use `p` again once `Some(q)` with `q != p` is returned.
        unsafe { self.free(p) };
        Some(q)
    }

    /// Current statistics.
    pub fn stats(&self) -> MemStats {
        self.with(|st| st.stats())
    }

    /// Human-readable status, like OpenSER's `fm_status`.
    pub fn status_dump(&self) -> String {
        self.with(|st| {
            let s = st.stats();
            let mut out = String::new();
            let _ = writeln!(out, "shm heap status:");
            let _ = writeln!(out, " heap size= {}", s.total);
            let _ = writeln!(
                out,
                " used= {}, used+overhead={}, free={}",
                s.used, s.real_used, s.free
            );
            let _ = writeln!(out, " max used (+overhead)= {}", s.max_used);
            let _ = writeln!(out, " largest free= {}", s.largest_free);
            let _ = writeln!(out, " dumping free list:");
            let mut n = 0usize;
            let mut bytes = 0usize;
            for c in 0..NCLASSES {
                if st.counts[c] == 0 {
                    continue;
                }
                let mut sum = 0usize;
                let mut b = st.heads[c];
                while !b.is_null() {
                    // SAFETY: `b` is the head of list `c` or a `next` link of one of its
                    // members; list members are free blocks of this heap.
                    sum += unsafe { bsize(b) };
                    // SAFETY: `b` is a listed free block, so its payload holds its links.
                    b = unsafe { link_next(b) };
                }
                let (lo, hi) = if c < NSMALL {
                    ((c + 1) * ALIGN, (c + 1) * ALIGN)
                } else {
                    let k = (c - NSMALL) as u32 + SMALL_LOG2;
                    (1usize << k, (1usize << k).saturating_mul(2) - 1)
                };
                let _ = writeln!(
                    out,
                    " hash = {c:4} fragments no.: {:6}, bytes: {sum:10} - bucket size: {lo} - {hi}",
                    st.counts[c]
                );
                n += st.counts[c] as usize;
                bytes += sum;
            }
            let _ = writeln!(out, " TOTAL: {n} free fragments = {bytes} free bytes");
            let _ = writeln!(out, "-----------------------------");
            out
        })
    }

    /// Walks every block and every free list and checks the heap's invariants.
    pub fn check(&self) -> Result<(), String> {
        self.with(Self::check_state)
    }

    /// [`Heap::check`] with the heap lock already held by this process, e.g. taken over
    /// from a dead process with [`FastLock::take_over`] (the guard proves it).
    pub fn check_held(&self, held: &crate::lock::FastLockGuard<'_>) -> Result<(), String> {
        if !std::ptr::eq(held.lock_ref(), &self.lock) {
            return Err("check_held: the guard is not this heap's lock".into());
        }
        // SAFETY: this process holds the heap lock (the guard of this very lock, checked
        // above, is borrowed for the call), and the state is only accessed under it, so this
        // is the only live reference to it.
        let st = unsafe { &mut *self.state.get() };
        Self::check_state(st)
    }

    fn check_state(st: &mut State) -> Result<(), String> {
        {
            let lo = st.first as usize;
            let hi = st.sentinel as usize;
            let mut b = st.first;
            let mut prev_size = 0usize;
            let mut prev_free = false;
            let (mut used, mut free_bytes, mut nfree, mut nused) = (0usize, 0usize, 0usize, 0);
            // Every pointer followed is checked to be inside [first, sentinel] and 16-aligned
            // before it is dereferenced, so a corrupted heap is reported, not walked off.
            while b != st.sentinel {
                let a = b as usize;
                if a < lo || a > hi || !a.is_multiple_of(ALIGN) {
                    return Err(format!("block {a:#x} outside heap or misaligned"));
                }
                // SAFETY: `b` is a 16-aligned address in [first, sentinel] (checked just above),
                // so it is in bounds and a full header fits before the sentinel's end.
                let word = unsafe { size_word(b) };
                let size = word & SIZE_MASK;
                if word & (ALIGN - 1) & !USED != 0 || size < MIN_PAYLOAD {
                    return Err(format!("block {a:#x}: bad size word {word:#x}"));
                }
                // SAFETY: as for the size word: `b` is a checked, aligned header address.
                let recorded_prev = unsafe { prev_size_word(b) };
                if recorded_prev != prev_size {
                    return Err(format!(
                        "block {a:#x}: prev_size {recorded_prev} != {prev_size}"
                    ));
                }
                if a + HDR + size > hi {
                    return Err(format!("block {a:#x} size {size} runs past the end"));
                }
                if word & USED != 0 {
                    used += size;
                    nused += 1;
                    prev_free = false;
                } else {
                    if prev_free {
                        return Err(format!("block {a:#x}: two adjacent free blocks"));
                    }
                    let c = size_class(size);
                    let mut m = st.heads[c];
                    let mut found = false;
                    let mut guard = 0usize;
                    while !m.is_null() && guard <= st.fragments {
                        if m == b {
                            found = true;
                            break;
                        }
                        // SAFETY: `m` is the head of list `c` or a `next` link reached from it
                        // (at most `fragments + 1` steps); list members are free blocks of
                        // this heap, whose payload holds their links. (This walk trusts the
                        // links; the walk over the lists below range-checks them.)
                        m = unsafe { link_next(m) };
                        guard += 1;
                    }
                    if !found {
                        return Err(format!("free block {a:#x} ({size}) not in class {c}"));
                    }
                    free_bytes += HDR + size;
                    nfree += 1;
                    prev_free = true;
                }
                prev_size = size;
                // SAFETY: `b` is a checked header, not the sentinel (loop condition), whose
                // extent `HDR + size` ends at or before the sentinel (checked above).
                b = unsafe { next_block(b) };
            }
            // SAFETY: `b` is the sentinel, a header inside the region (set by `init`).
            let sentinel_prev = unsafe { prev_size_word(b) };
            // SAFETY: as above.
            let sentinel_word = unsafe { size_word(b) };
            if sentinel_prev != prev_size || sentinel_word != USED {
                return Err("bad sentinel".into());
            }
            let mut listed = 0usize;
            for c in 0..NCLASSES {
                let mut m = st.heads[c];
                let mut prev: *mut Block = ptr::null_mut();
                let mut cnt = 0u32;
                while !m.is_null() {
                    let a = m as usize;
                    if a < lo || a >= hi || !a.is_multiple_of(ALIGN) {
                        return Err(format!("class {c}: link {a:#x} outside heap"));
                    }
                    // SAFETY: `m` is a 16-aligned address in [first, sentinel) (checked just
                    // above): a header slot inside the region.
                    let word = unsafe { size_word(m) };
                    if word & USED != 0 || size_class(word & SIZE_MASK) != c {
                        return Err(format!("class {c}: block {a:#x} used or wrong class"));
                    }
                    // SAFETY: `m` is a checked header of a free block, not the sentinel, so
                    // its payload (>= 16 bytes, inside the region) holds its links.
                    if unsafe { link_prev(m) } != prev {
                        return Err(format!("class {c}: bad prev link at {a:#x}"));
                    }
                    cnt += 1;
                    if cnt as usize > nfree {
                        return Err(format!("class {c}: list cycle"));
                    }
                    prev = m;
                    // SAFETY: as for the `prev` link.
                    m = unsafe { link_next(m) };
                }
                if cnt != st.counts[c] {
                    return Err(format!("class {c}: count {} != {cnt}", st.counts[c]));
                }
                let bit = st.bitmap[c / 64] & (1 << (c % 64)) != 0;
                if bit != (cnt > 0) {
                    return Err(format!("class {c}: bitmap bit {bit} with {cnt} blocks"));
                }
                listed += cnt as usize;
            }
            for w in 0..NWORDS {
                if (st.summary & (1 << w) != 0) != (st.bitmap[w] != 0) {
                    return Err(format!("summary bit {w} wrong"));
                }
            }
            if listed != nfree || nfree != st.fragments {
                return Err(format!(
                    "free blocks: walked {nfree}, listed {listed}, counted {}",
                    st.fragments
                ));
            }
            if used != st.used {
                return Err(format!("used: walked {used}, counted {}", st.used));
            }
            if free_bytes != st.free_bytes {
                return Err(format!(
                    "free: walked {free_bytes}, counted {}",
                    st.free_bytes
                ));
            }
            if st.max_used < st.total - st.free_bytes {
                return Err("max_used below real_used".into());
            }
            let overhead = HEAP_HEADER + HDR + nused * HDR;
            if used + overhead + free_bytes != st.total {
                return Err(format!(
                    "used {used} + overhead {overhead} + free {free_bytes} != total {}",
                    st.total
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A 16-aligned private buffer.
    struct Buf(Vec<u128>);
    impl Buf {
        fn new(len: usize) -> Buf {
            Buf(vec![0u128; len.div_ceil(16)])
        }
        fn heap(&mut self) -> &Heap {
            let len = self.0.len() * 16;
            // SAFETY: the Vec is 16-aligned, `len` bytes long, and borrowed mutably for the
            // life of the returned heap.
            unsafe { Heap::init(self.0.as_mut_ptr().cast(), len) }
        }
    }

    #[test]
    fn classes() {
        assert_eq!(size_class(16), 0);
        assert_eq!(size_class(16384), NSMALL - 1);
        assert_eq!(size_class(16400), NSMALL);
        assert_eq!(size_class(32768), NSMALL + 1);
        assert_eq!(size_class(usize::MAX & SIZE_MASK), NCLASSES - 1);
        assert_eq!(round_request(0), Some(16));
        assert_eq!(round_request(17), Some(32));
        assert_eq!(round_request(usize::MAX), None);
    }

    #[test]
    fn basic_alloc_free_coalesce() {
        let mut buf = Buf::new(1 << 16);
        let h = buf.heap();
        let s0 = h.stats();
        assert_eq!(s0.fragments, 1);
        assert_eq!(s0.used, 0);
        assert_eq!(s0.free, s0.total - s0.real_used);
        let a = h.alloc(10).unwrap();
        let b = h.alloc(100).unwrap();
        let c = h.alloc(1000).unwrap();
        assert_eq!(a.as_ptr() as usize % 16, 0);
        h.check().unwrap();
        assert_eq!(h.stats().used, 16 + 112 + 1008);
        // SAFETY: `b` is a live allocation of h, freed once and not used afterwards.
        unsafe { h.free(b) };
        h.check().unwrap();
        assert_eq!(h.stats().fragments, 2);
        // SAFETY: `a` is a live allocation of h, freed once and not used afterwards.
        unsafe { h.free(a) };
        h.check().unwrap();
        assert_eq!(h.stats().fragments, 2);
        // SAFETY: `c` is a live allocation of h, freed once and not used afterwards.
        unsafe { h.free(c) };
        h.check().unwrap();
        assert_eq!(
            h.stats(),
            MemStats {
                max_used: h.stats().max_used,
                ..s0
            }
        );
        assert!(h.status_dump().contains("TOTAL: 1 free fragments"));
    }

    #[test]
    fn realloc_grows_in_place_when_next_is_free() {
        let mut buf = Buf::new(1 << 16);
        let h = buf.heap();
        let a = h.alloc(100).unwrap();
        // SAFETY: `a` is live, 112 usable bytes.
        unsafe { ptr::write_bytes(a.as_ptr(), 0xAB, 100) };
        // SAFETY: `a` is a live allocation of h; it is not used again unless returned.
        let b = unsafe { h.realloc(a, 5000) }.unwrap();
        assert_eq!(a, b);
        // SAFETY: `b` is live with >= 5000 bytes, the first 100 preserved from `a`.
        let kept = unsafe { std::slice::from_raw_parts(b.as_ptr(), 100) };
        assert!(kept.iter().all(|&x| x == 0xAB));
        // SAFETY: `b` is a live allocation of h (`kept` is no longer used).
        let c = unsafe { h.realloc(b, 50) }.unwrap();
        assert_eq!(c, b);
        h.check().unwrap();
        // SAFETY: `c` is a live allocation of h, freed once.
        unsafe { h.free(c) };
        assert_eq!(h.stats().fragments, 1);
    }

    #[test]
    fn realloc_moves_down_into_free_predecessor() {
        let mut buf = Buf::new(1 << 16);
        let h = buf.heap();
        let a = h.alloc(1000).unwrap();
        let b = h.alloc(200).unwrap();
        let c = h.alloc(100).unwrap();
        // SAFETY: `b` is a live allocation of >= 200 bytes, borrowed only for this loop.
        let payload = unsafe { std::slice::from_raw_parts_mut(b.as_ptr(), 200) };
        for (i, x) in payload.iter_mut().enumerate() {
            *x = i as u8;
        }
        // SAFETY: `a` is a live allocation of h, freed once; its address is only compared
        // afterwards.
        unsafe { h.free(a) };
        // SAFETY: `b` is a live allocation of h (`payload` is no longer used); `b` is
        // replaced by the realloc result.
        let m = unsafe { h.realloc(b, 1100) }.unwrap();
        assert_eq!(m, a, "merged into the predecessor");
        // SAFETY: `m` is live with >= 1100 bytes, the first 200 moved from `b`.
        let kept = unsafe { std::slice::from_raw_parts(m.as_ptr(), 200) };
        assert!(kept.iter().enumerate().all(|(i, &x)| x == i as u8));
        h.check().unwrap();
        // SAFETY: `m` is a live allocation of h (`kept` is no longer used), freed once.
        unsafe { h.free(m) };
        // SAFETY: `c` is a live allocation of h, freed once.
        unsafe { h.free(c) };
        h.check().unwrap();
        assert_eq!(h.stats().fragments, 1);
    }

    #[test]
    fn exhaustion_returns_none_then_recovers() {
        let mut buf = Buf::new(1 << 20);
        let h = buf.heap();
        let s0 = h.stats();
        assert!(h.alloc(usize::MAX).is_none());
        assert!(h.alloc(isize::MAX as usize).is_none());
        assert!(h.alloc(2 << 20).is_none());
        let mut ptrs = Vec::new();
        let sizes = [24usize, 700, 5000, 17000, 64];
        let mut i = 0;
        while let Some(p) = h.alloc(sizes[i % sizes.len()]) {
            ptrs.push(p);
            i += 1;
        }
        // Fill the remaining crumbs with minimal blocks.
        while let Some(p) = h.alloc(1) {
            ptrs.push(p);
        }
        assert!(h.alloc(1).is_none());
        h.check().unwrap();
        assert!(h.stats().free < 64, "{:?}", h.stats());
        // Free in an interleaved order to exercise both-side coalescing.
        let (even, odd): (Vec<_>, Vec<_>) = ptrs.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        for (_, p) in even.into_iter().chain(odd) {
            // SAFETY: each pointer is live and freed once.
            unsafe { h.free(*p) };
        }
        h.check().unwrap();
        let s = h.stats();
        assert_eq!(s.fragments, 1);
        assert_eq!(s.largest_free, s0.largest_free);
        assert_eq!(s.used, 0);
        assert_eq!(s.real_used, s0.real_used);
    }

    #[test]
    fn double_free_and_foreign_pointers_are_ignored() {
        let mut buf = Buf::new(1 << 14);
        let h = buf.heap();
        let a = h.alloc(32).unwrap();
        let b = h.alloc(32).unwrap();
        let c = h.alloc(32).unwrap();
        // SAFETY: `a` is a live allocation of h, not used afterwards.
        unsafe { h.free(a) };
        // SAFETY: `b` is a live allocation of h; it merges into the free `a`.
        unsafe { h.free(b) };
        // SAFETY: deliberately breaks `free`'s contract (a double free) to check that it is
        // ignored: nothing was allocated in between, so `b`'s stale header, inside the merged
        // free payload and clear of the links at its start, still has the used flag cleared.
        unsafe { h.free(b) };
        // SAFETY: `c` is a live allocation of h, not used afterwards.
        unsafe { h.free(c) };
        h.check().unwrap();
        assert_eq!(h.stats().fragments, 1);
        let a = h.alloc(32).unwrap();
        let mut x = 0u128;
        // SAFETY: `a` is a live allocation of h, not used afterwards.
        unsafe { h.free(a) };
        // SAFETY: deliberately breaks `free`'s contract (a double free) to check that it is
        // ignored: nothing was allocated in between, so `a`'s header still reads free.
        unsafe { h.free(a) };
        // SAFETY: deliberately breaks `free`'s contract (a foreign pointer): `x` lives on the
        // stack, outside the heap's region, so `block_of` rejects it before any access.
        unsafe { h.free(NonNull::from(&mut x).cast()) };
        h.check().unwrap();
        assert_eq!(h.stats().fragments, 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize),
        Free(usize),
        Realloc(usize, usize),
    }

    /// Sizes 1..20000, with half of them small (1..512) so exact classes get reuse too.
    fn size() -> impl Strategy<Value = usize> {
        prop_oneof![1usize..512, 1usize..20000]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => size().prop_map(Op::Alloc),
            3 => any::<usize>().prop_map(Op::Free),
            2 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        ]
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]
        #[test]
        fn model_based(ops in proptest::collection::vec(op(), 1..200)) {
            let mut buf = Buf::new(512 * 1024);
            let h = buf.heap();
            let region = buf_range(h);
            let s0 = h.stats();
            // model: addr -> (requested len, fill byte)
            let mut live: BTreeMap<usize, (usize, u8)> = BTreeMap::new();
            let mut tag: u8 = 0;
            for op in ops {
                tag = tag.wrapping_add(1);
                match op {
                    Op::Alloc(n) => {
                        if let Some(p) = h.alloc(n) {
                            let a = p.as_ptr() as usize;
                            prop_assert_eq!(a % 16, 0);
                            // SAFETY: fresh allocation of >= n bytes.
                            unsafe { ptr::write_bytes(p.as_ptr(), tag, n) };
                            live.insert(a, (n, tag));
                        } else {
                            prop_assert!(h.stats().largest_free < n);
                        }
                    }
                    Op::Free(i) => {
                        if live.is_empty() { continue; }
                        let a = *live.keys().nth(i % live.len()).unwrap();
                        let (n, t) = live.remove(&a).unwrap();
                        // SAFETY: `a` is a live allocation holding n bytes of t.
                        let bytes = unsafe { std::slice::from_raw_parts(a as *const u8, n) };
                        prop_assert!(bytes.iter().all(|&b| b == t));
                        // SAFETY: `a` is a live allocation of h (`bytes` is no longer used),
                        // removed from the model, so freed once.
                        unsafe { h.free(nn(a)) };
                    }
                    Op::Realloc(i, n) => {
                        if live.is_empty() { continue; }
                        let a = *live.keys().nth(i % live.len()).unwrap();
                        let (old, t) = live[&a];
                        // SAFETY: `a` is a live allocation of h; the model drops it on success.
                        let r = unsafe { h.realloc(nn(a), n) };
                        match r {
                            Some(q) => {
                                live.remove(&a);
                                let keep = old.min(n);
                                // SAFETY: q holds >= n >= keep bytes, the first `keep` preserved.
                                let kept = unsafe { std::slice::from_raw_parts(q.as_ptr(), keep) };
                                prop_assert!(kept.iter().all(|&b| b == t));
                                // SAFETY: q is a live allocation of >= n bytes (`kept` is no
                                // longer used).
                                unsafe { ptr::write_bytes(q.as_ptr(), tag, n) };
                                live.insert(q.as_ptr() as usize, (n, tag));
                            }
                            None => {
                                prop_assert!(h.stats().largest_free < n);
                            }
                        }
                    }
                }
                h.check().map_err(TestCaseError::fail)?;
                // ranges: disjoint, inside the region, usable >= requested
                let mut end = 0usize;
                let mut used = 0usize;
                for (&a, &(n, _)) in &live {
                    // SAFETY: `a` is live.
                    let u = unsafe { h.usable_size(nn(a)) };
                    prop_assert!(u >= n && u <= round_request(n).unwrap() + 16);
                    prop_assert!(a >= end, "overlap at {:#x}", a);
                    prop_assert!(a >= region.0 && a + u <= region.1);
                    end = a + u;
                    used += u;
                }
                let s = h.stats();
                prop_assert_eq!(s.used, used);
                prop_assert_eq!(s.free, s.total - s.real_used);
                prop_assert_eq!(s.real_used, used + s0.real_used + live.len() * 16);
                prop_assert!(s.max_used >= s.real_used);
            }
            for &a in live.keys() {
                // SAFETY: each live allocation is freed once.
                unsafe { h.free(nn(a)) };
            }
            h.check().map_err(TestCaseError::fail)?;
            let s = h.stats();
            prop_assert_eq!(s.fragments, 1);
            prop_assert_eq!(s.largest_free, s0.largest_free);
            prop_assert_eq!(s.used, 0);
            prop_assert_eq!(s.real_used, s0.real_used);
        }
    }

    /// The address of a model allocation as a pointer (never 0: it came from the heap).
    fn nn(a: usize) -> NonNull<u8> {
        NonNull::new(a as *mut u8).expect("heap addresses are non-null")
    }

    fn buf_range(h: &Heap) -> (usize, usize) {
        let base = h as *const Heap as usize;
        (base + HEAP_HEADER, base + h.stats().total - HDR)
    }
}
