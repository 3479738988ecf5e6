/*
 * native/winfast_api.h -- the window engine's entry points as C functions, for the
 * first reader's loop in C (native/hotloop.c, in another extension module).
 *
 * mount.server._winfast exports one capsule, "mount.server._winfast._C_API",
 * holding a winfast_api_t; the hot loop imports it once (PyCapsule_Import) and
 * calls the same functions Python's Session._native / _native_io call through the
 * Engine's methods, with the same arguments and results, minus the method lookup
 * and the bytecode around them (issues 12, 15; docs/decisions.md, "Window IOCTLs,
 * READs and WRITEs in the C loop").  Every function wants the GIL held.
 *
 * A new window operation belongs behind `ioctl` (Engine.remap's dispatch in
 * native/winfast.c), not in a list of commands in hotloop.c: the loop hands it
 * every FUSE_IOCTL and takes whatever the engine answers.
 */
#ifndef SHMFS_WINFAST_API_H
#define SHMFS_WINFAST_API_H

#include <Python.h>

#define WINFAST_API_CAPSULE "mount.server._winfast._C_API"
#define WINFAST_API_VERSION 1

typedef struct {
    int version;        /* WINFAST_API_VERSION */
    PyTypeObject *type; /* _winfast.Engine: what `eng` must be */
    /* Engine.remap(msg): None declined (nothing changed), else the number of
     * notifications queued ahead of the reply (an int); NULL: failed after it began
     * changing state (exception set) */
    PyObject *(*ioctl)(PyObject *eng, PyObject *msg);
    /* Engine.read((msg, fd)) / Engine.write((msg, fd)): None declined, 0 answered
     * (the reply written to fd), an errno answered but its reply not written;
     * NULL as above */
    PyObject *(*read)(PyObject *eng, PyObject *args);
    PyObject *(*write)(PyObject *eng, PyObject *args);
    /* Engine.pending(): batches queued and not yet written by its writer thread */
    long (*pending)(PyObject *eng);
} winfast_api_t;

#endif
