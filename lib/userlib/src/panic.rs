//! A panicking task logs the message and exits with [`crate::EXIT_PANIC`].

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    crate::exit(crate::EXIT_PANIC)
}
