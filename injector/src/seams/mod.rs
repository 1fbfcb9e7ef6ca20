//! Kernel seams: narrow traits over the syscalls the faults need, each with a real
//! implementation and a recording fake, one seam per file.

pub mod signal;
