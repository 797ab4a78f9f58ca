//! kith-tests: harness
