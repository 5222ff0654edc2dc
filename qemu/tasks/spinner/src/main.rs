//! Waits to be started, says so, then spins forever without a system call:
//! only the timer can give the CPU to another task of its priority.
#![no_std]
#![no_main]

userlib::cap_slot!(GO: Notification = "go");
userlib::cap_slot!(STARTED: Notification = "started");
userlib::entry!(main);

fn main() -> u64 {
    if GO.get().wait(0, 0).is_err() {
        return 1;
    }
    defmt::info!("spinning");
    let _ = STARTED.get().signal();
    loop {
        core::hint::spin_loop();
    }
}
