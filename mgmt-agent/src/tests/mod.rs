//! Host tests of the whole agent against the mock hypervisor, one file per concern.

mod atomic;
mod commands;
mod ddf;
mod faults;
mod images;
mod lifecycle;
mod nodes;
mod persistence;
mod resources;
mod shell;
mod support;
mod ui;
