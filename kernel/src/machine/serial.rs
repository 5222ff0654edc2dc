//! COM1 (16550 UART at port 0x3f8), polled: the kernel's only console.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = COM1 + 5;
const TRANSMIT_EMPTY: u8 = 1 << 5;

/// Programs 115200 baud, 8N1, FIFOs on, UART interrupts off.
pub fn init() {
    let settings: [(u16, u8); 7] = [
        (COM1 + 1, 0x00), // no UART interrupts
        (COM1 + 3, 0x80), // divisor latch access
        (COM1, 0x01),     // divisor 1: 115200 baud
        (COM1 + 1, 0x00),
        (COM1 + 3, 0x03), // 8 data bits, no parity, one stop bit
        (COM1 + 2, 0xc7), // FIFOs on and cleared
        (COM1 + 4, 0x03), // DTR, RTS
    ];
    for (port, value) in settings {
        // SAFETY: ports 0x3f8-0x3ff belong to COM1, which only this module
        // drives; these writes configure the UART and touch no memory.
        unsafe { Port::new(port).write(value) };
    }
}

/// Sends `bytes`, waiting for room in the transmitter before each one.
pub fn write(bytes: &[u8]) {
    let mut status: Port<u8> = Port::new(LINE_STATUS);
    let mut data: Port<u8> = Port::new(COM1);
    for &byte in bytes {
        // SAFETY: reading COM1's line-status register has no side effects
        // beyond the UART, which only this module drives.
        while unsafe { status.read() } & TRANSMIT_EMPTY == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: writing COM1's transmit register sends one byte.
        unsafe { data.write(byte) };
    }
}
