"""Mounting: ``options`` (-o parsing, as tmpfs and mount(8) take them), ``kernel``
(mount(2), fusermount3, mountinfo, unmount) and ``managed`` (a fresh shmfs that is
always taken down, for tools and tests)."""
