//! Emulated devices that guests see, and the console input switch that feeds them.
//!
//! Owns: the guest-visible behaviour of each emulated device as a pure state machine (register
//! reads and writes in, bytes and interrupt levels out), so that all of it is tested on the
//! host. Never touches hardware, never traps, never prints and never talks to the GIC: the
//! glue that decodes a stage-2 data abort, delivers the interrupt through the vGIC and drives
//! the physical UART calls into these models and acts on what they return.

pub mod console_input;
pub mod pl011;
