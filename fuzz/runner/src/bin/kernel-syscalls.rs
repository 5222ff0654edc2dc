//! libFuzzer entry point of the `kernel-syscalls` target (`fuzz_targets::TARGETS`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = fuzz_targets::target("kernel-syscalls").expect("the target is in fuzz_targets::TARGETS");
    (target.run)(data);
});
