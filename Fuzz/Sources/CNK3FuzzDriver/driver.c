// Declarations only (see include/nk3_fuzz_driver.h); libFuzzer provides the definition at link time.
#include "nk3_fuzz_driver.h"
