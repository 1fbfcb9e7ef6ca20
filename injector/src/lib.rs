//! nri-chaos fault engine.
