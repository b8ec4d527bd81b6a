//! The arena of prepared requests: a level's requests, rendered before the level into one
//! immutable buffer ([`Prepared`]) that every core reads without copying it.
//!
//! A request is a list of parts (byte ranges) sent back to back: a head, a `Content-Length`
//! line, and the body's pieces — a dataset row's body, a synthetic prompt's JSON around views of
//! the shared text, a marker or salt that keeps a repeated row apart. The bytes every level
//! shares (the text, the rows' bodies, the heads) sit once in the run's *base*, which each
//! level's arena addresses beside its own few bytes (the length lines and markers it needed):
//! offsets below the base's length are the base's, the rest the arena's own. The engine hands
//! the kernel a [`RequestBuf`], which the HTTP client writes with one vectored send.
//!
//! Why not `Bytes`: cloning a `Bytes` for each request bumps an atomic refcount that every core
//! shares, a cross-core write on the send path. Here each core holds its own non-atomic handle
//! (`Rc`) to the shared buffer, taken once per level, so sending touches nothing another core
//! writes. There is still only one copy of the bytes, however large the dataset.

use std::rc::Rc;
use std::sync::Arc;

use crate::http::conn::Request;

/// A byte range of the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    start: u32,
    len: u32,
}

impl Part {
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Every request's bytes, in buffers that never change after they are built.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The run's shared bytes (empty for an arena of its own); parts below its length point here.
    base: Arc<Vec<u8>>,
    /// This arena's own bytes, addressed after the base's.
    bytes: Vec<u8>,
    parts: Vec<Part>,
    /// Where each request's parts end in `parts` (they start where the previous one's end).
    ends: Vec<u32>,
}

/// The arena's limit: parts address the base and the arena's own bytes with 32-bit offsets.
pub const MAX_ARENA_BYTES: usize = u32::MAX as usize;

impl Prepared {
    /// An empty arena whose parts may also point into `base` (parts stored in an arena that
    /// was [`Prepared::into_base`]d).
    pub fn on(base: Arc<Vec<u8>>) -> Self {
        Self {
            base,
            ..Self::default()
        }
    }

    /// This arena's bytes as the base of later arenas (its parts stay valid in them); it must
    /// hold no request.
    pub fn into_base(self) -> Arc<Vec<u8>> {
        debug_assert!(self.ends.is_empty() && self.base.is_empty());
        Arc::new(self.bytes)
    }

    /// Adds `bytes` to the arena (not yet part of any request); `None` past [`MAX_ARENA_BYTES`].
    pub fn store(&mut self, bytes: &[u8]) -> Option<Part> {
        let start = self.base.len() + self.bytes.len();
        if start + bytes.len() > MAX_ARENA_BYTES {
            return None;
        }
        self.bytes.extend_from_slice(bytes);
        Some(Part {
            start: start as u32,
            len: bytes.len() as u32,
        })
    }

    /// The range `from..to` of a part stored earlier.
    pub fn part_at(base: Part, from: usize, to: usize) -> Part {
        Part {
            start: base.start + from as u32,
            len: (to - from) as u32,
        }
    }

    /// Appends one request made of `parts`, in order.
    pub fn push_request(&mut self, parts: impl IntoIterator<Item = Part>) {
        self.parts.extend(parts);
        self.ends.push(self.parts.len() as u32);
    }

    /// Stores `request` and appends it as a one-part request; `None` past the arena's limit.
    pub fn push(&mut self, request: &[u8]) -> Option<()> {
        let part = self.store(request)?;
        self.push_request([part]);
        Some(())
    }

    /// The number of requests.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Request `i`'s parts.
    pub fn parts(&self, i: usize) -> &[Part] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.parts[start..self.ends[i] as usize]
    }

    fn slice(&self, p: Part) -> &[u8] {
        self.range(p.start as usize, (p.start + p.len) as usize)
    }

    /// The bytes at `start..end` of the address space (a part never spans base and own bytes).
    fn range(&self, start: usize, end: usize) -> &[u8] {
        let base = self.base.len();
        if start >= base {
            &self.bytes[start - base..end - base]
        } else {
            &self.base[start..end]
        }
    }

    /// Request `i` as one byte string (a copy; for tests and checks).
    pub fn get(&self, i: usize) -> Vec<u8> {
        self.parts(i)
            .iter()
            .flat_map(|&p| self.slice(p))
            .copied()
            .collect()
    }

    /// The arena's own size in bytes (the base is shared), and the parts' count.
    pub fn footprint(&self) -> (usize, usize) {
        (self.bytes.len(), self.parts.len())
    }
}

/// One core's handle on the shared [`Prepared`] buffer: cloned per request without any atomic
/// operation (the `Rc` never leaves its core).
pub type CoreRequests = Rc<Arc<Prepared>>;

/// One request, as the HTTP client writes it: a view of the core's handle on the arena.
#[derive(Debug, Clone)]
pub struct RequestBuf {
    arena: CoreRequests,
    request: usize,
}

impl RequestBuf {
    pub fn new(arena: &CoreRequests, request: usize) -> Self {
        Self {
            arena: arena.clone(),
            request,
        }
    }
}

impl Request for RequestBuf {
    type Part = PartBuf;

    fn part_count(&self) -> usize {
        self.arena.parts(self.request).len()
    }

    fn part(&self, i: usize) -> &[u8] {
        self.arena.slice(self.arena.parts(self.request)[i])
    }

    fn owned_part(&self, i: usize, from: usize) -> PartBuf {
        let p = self.arena.parts(self.request)[i];
        let start = p.start as usize + from.min(p.len as usize);
        PartBuf {
            arena: self.arena.clone(),
            start,
            end: (p.start + p.len) as usize,
        }
    }
}

/// A byte range of the arena as an owned buffer the kernel can write from (io_uring needs the
/// buffer to outlive the operation).
#[derive(Debug, Clone)]
pub struct PartBuf {
    arena: CoreRequests,
    start: usize,
    end: usize,
}

impl PartBuf {
    pub fn as_slice(&self) -> &[u8] {
        self.arena.range(self.start, self.end)
    }
}

// SAFETY: the pointer is into `Prepared::bytes` or its base, neither of which is mutated or
// reallocated after the `Prepared` is built (it sits behind an `Arc` with no mutable access, and
// its base behind an `Arc` it holds), and `self` keeps both alive through its `Rc<Arc<_>>` for as
// long as the runtime holds this buffer. `bytes_init` is the length of the view, which lies
// within one of the two.
unsafe impl monoio::buf::IoBuf for PartBuf {
    fn read_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_their_parts_back_to_back() {
        let mut p = Prepared::default();
        p.push(b"first").unwrap();
        p.push(b"").unwrap();
        let shared = p.store(b"0123456789").unwrap();
        let head = p.store(b"head:").unwrap();
        p.push_request([
            head,
            Prepared::part_at(shared, 2, 5),
            Prepared::part_at(shared, 8, 10),
        ]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.get(0), b"first");
        assert_eq!(p.get(1), b"");
        assert_eq!(p.get(2), b"head:23489");
        let core: CoreRequests = Rc::new(Arc::new(p));
        let r = RequestBuf::new(&core, 2);
        assert_eq!(r.part_count(), 3);
        assert_eq!(r.len(), 10);
        assert_eq!(r.part(1), b"234");
        let tail = r.owned_part(1, 1);
        assert_eq!(tail.as_slice(), b"34");
        use monoio::buf::IoBuf;
        assert_eq!(tail.bytes_init(), 2);
        // SAFETY (test): read_ptr points at bytes_init initialized bytes.
        let seen = unsafe { std::slice::from_raw_parts(tail.read_ptr(), tail.bytes_init()) };
        assert_eq!(seen, b"34");
        assert!(RequestBuf::new(&core, 1).is_empty());
    }

    #[test]
    fn an_arena_on_a_base_sends_the_bases_bytes_and_its_own() {
        let mut shared = Prepared::default();
        let head = shared.store(b"HEAD ").unwrap();
        let text = shared.store(b"abcdef").unwrap();
        let base = shared.into_base();
        let mut level = Prepared::on(base.clone());
        let own = level.store(b"[m]").unwrap();
        level.push_request([head, own, Prepared::part_at(text, 1, 4)]);
        let mut other = Prepared::on(base);
        other.push_request([head, text]);
        assert_eq!(level.get(0), b"HEAD [m]bcd");
        assert_eq!(other.get(0), b"HEAD abcdef");
        assert_eq!(level.footprint(), (3, 3));
        let core: CoreRequests = Rc::new(Arc::new(level));
        let r = RequestBuf::new(&core, 0);
        assert_eq!(r.owned_part(1, 1).as_slice(), b"m]");
        assert_eq!(r.owned_part(2, 0).as_slice(), b"bcd");
    }
}
