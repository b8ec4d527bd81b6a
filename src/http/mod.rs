//! Layer 4 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `rt`; `api` and the layers after it use it.
//!
//! The hand-written HTTP/1.1 client: response head parsing (`head`), body framing (`body`), one
//! response read from whatever bytes arrive (`response`), endpoint URLs (`url`), TLS over monoio
//! (`tls`), socket helpers (`sock`), what an exchange takes and gives (`handler`), and the
//! connection that runs one request/response exchange (`conn`), reading from the core's receive
//! ring (`ring_rx`) or through monoio. Beside the load, `blocking` runs one exchange on a
//! connection of its own for the side channels (`/metrics`, cache resets).
//!
//! Data flow: `engine::request` takes a [`conn::Conn`] from its core's pool, writes the request
//! bytes rendered by `prepared`, and reads the response through `response` (`head` → `body`)
//! → the handler (`sse`).

pub mod blocking;
pub mod body;
pub mod conn;
pub mod handler;
pub mod head;
pub mod response;
pub mod ring_rx;
pub mod sock;
pub mod sse;
pub mod tls;
pub mod url;
