"""The shmfs ioctl ABI (``abi``) and a standard-library client for it (``client``)."""
