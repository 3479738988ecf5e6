"""The daemon: ``session`` (the /dev/fuse loop), ``ops`` (requests -> fsimpl -> replies),
``ioctl`` (the shmfs ioctls), ``cpulatency`` (the CPU latency hold), ``daemon`` (start-up)."""
