//! NEON kernels (placeholder until written: no table).

use super::Kernels;

pub(super) fn kernels() -> Option<Kernels> {
    None
}
