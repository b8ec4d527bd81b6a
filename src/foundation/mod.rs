//! Layer 1 of 12 (`docs/architecture.md`, "Code map"), the foundations: what every other layer may use and which uses no other layer —
//! errors and exit statuses (`error`), standard output that a closed pipe cannot crash
//! (`console`), the one range check of numeric flags (`flag_ranges`), clocks (`clock`), masking of
//! secrets (`secret`), Ctrl-C and SIGTERM (`interrupt`), and the box's open-file and port limits
//! (`os_limits`), and
//! the one way a request rate is written (`rate`). `docs/architecture.md` lists the layers.

pub mod clock;
pub mod console;
pub mod error;
pub mod flag_ranges;
pub mod interrupt;
pub mod os_limits;
pub mod rate;
pub mod secret;
