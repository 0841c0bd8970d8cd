//! Device trees: reading the one the bootloader gives us, writing one for each guest.
pub mod guest_fdt;
pub mod hwinfo;
