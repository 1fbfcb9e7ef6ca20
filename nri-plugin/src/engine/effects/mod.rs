//! One effect per fault kind, each applying one firing through the injector's seams.

pub(super) mod kill;
