"""POSIX/tmpfs conformance suite: every case runs on a kernel tmpfs (the oracle) and
on the filesystem under test, and the syscall results are compared."""
