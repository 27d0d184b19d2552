#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| oneseal_fuzz::flows_request(data));
