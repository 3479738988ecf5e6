"""Shared code of the window tools (scripts/uml_physmem.py, scripts/vlm_window.py).

* ``sysmm``    -- ctypes mmap/munmap/mprotect/madvise/fallocate (Python's mmap module
                  cannot MAP_FIXED), the process's VMA count and vm.max_map_count.
* ``targets``  -- a fresh shmfs or tmpfs for the run (always unmounted), or an
                  existing mount; statfs usage and the daemon's RSS.
* ``pattern``  -- the bytes a page/buffer must hold for a given (id, version).
* ``progress`` -- a status line per second.
* ``guest``    -- a simulated UML guest process (shmfs window or tmpfs MAP_FIXED backend).
* ``bufcache`` -- the buffer-cache slot backends of the VLM tool.
* ``wall``     -- the vm.max_map_count wall: one window laid out so that the kernel's
                  remap_file_pages emulation needs more VMAs than it allows.

Everything that touches a shmfs window goes through mount.winapi.client (the public
ioctl ABI of docs/windows.md), as a program in any language would.
"""
