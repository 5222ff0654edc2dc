//! libFuzzer entry point of the `acpi-aml` target (`fuzz_targets::TARGETS`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = fuzz_targets::target("acpi-aml").expect("the target is in fuzz_targets::TARGETS");
    (target.run)(data);
});
