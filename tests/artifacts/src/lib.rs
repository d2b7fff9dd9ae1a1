//! Paths of the compiled test plugins, one constant per member of
//! tests/plugins (`LOOPER`, `HOG`, …), and `ALL`, their crate names.
include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
