//! The process runtime: containers as supervised host processes, with no root and no daemon.

pub mod logs;
