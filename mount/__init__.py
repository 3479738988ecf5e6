"""Everything between fsimpl and the kernel's FUSE device, one concern per subpackage.

``wire``      the FUSE wire protocol: constants, struct layouts, a pure codec
``server``    the daemon: session loop over /dev/fuse, request handlers, ioctls,
              the CPU latency hold, the daemon's start-up
``winapi``    the shmfs ioctl ABI (window and statistics commands) and a client
              for it that needs only the standard library
``mounting``  getting a mount in place and taking it down: -o options, mount(2),
              fusermount3, mountinfo, and the fresh-mount helper of tools and tests
``cli``       the ``shmfs`` command and its subcommands
"""
