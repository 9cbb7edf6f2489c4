// libFuzzer's driver entry (compiler-rt FuzzerDriver.cpp), called from nk3-fuzz's main: SwiftPM links an
// executable target's entry as <module>_main, so the harness runs the driver itself.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

// LeakSanitizer's interface (compiler-rt include/sanitizer/lsan_interface.h), defined by the AddressSanitizer
// runtime the fuzz binary links: allocations made between __lsan_disable() and __lsan_enable() are never reported.
void __lsan_disable(void);
void __lsan_enable(void);
