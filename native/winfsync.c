/*
 * The FSYNC of a file, in C (issue 12, umlphys2).
 *
 * Why: uml_physmem's guests write every store through a mapping back with
 * msync(MS_SYNC), the point at which docs/windows.md guarantees that the object and
 * the other windows see it.  The kernel first writes the dirty pages back (WRITEs,
 * answered in C by winwrite.c) and then sends FUSE_FSYNC of the window: ~7,500 a
 * run, each ~50-60 us through the session's generic Python path (parse_request,
 * Operations._fsync, the reply) for what is an empty reply
 * (docs/performance.md, "uml_physmem's requests by kind and path").
 *
 * What the Python path does, and so this: fsimpl's ``fsync`` is tmpfs's
 * noop_fsync -- ``_get(ino)`` (ENOENT for an inode the filesystem does not know)
 * and the operation counter ``_ops["fsync"]``; Operations._fsync answers the empty
 * reply; the session writes that reply after every notification queued before it
 * (an FSYNC's reply is never written ahead of an invalidation: that is what makes
 * fsync(2) the point from which a store is coherent for the other inodes).  This
 * takes a well-formed FSYNC (exactly a fuse_in_header and a fuse_fsync_in, no
 * extensions) of an inode in ``fs._inodes``, window or not, counts it, and writes
 * the reply itself when the engine's writer has nothing queued, or queues it as a
 * batch of its own behind what is queued (the session calls it only with no Python
 * notification queued, as it calls Engine.remap).  Anything else -- an unknown
 * inode, a malformed message -- is declined untouched (None): Python answers it.
 * The handle is not looked at, as fsimpl does not: the kernel sends FSYNC only on a
 * file it opened, and an fsync grants nothing (no byte changes).
 *
 * Only the first reader's FSYNCs come here (the C loop runs on it; Session._handle
 * offers an FSYNC only when the reply fd is the engine's).  The reply is written to
 * engine_reply_fd(e) all the same, and a queued one goes to the fd its batch records
 * (queue_and_wake): were a clone reader's FSYNC ever handed over (Engine.remap_to), it
 * would still be answered on the fd it was read from -- each device fd answers only
 * the requests read from it (a reply written to another is ENOENT: a hung caller).
 *
 * ``SHMFS_WINFAST_FSYNC=0`` in the daemon's environment, read when the engine is
 * made, declines every FSYNC (A/B runs, the twin tests).
 */
#include "winfast.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define FSYNC_IN 16 /* fh, fsync_flags, padding */

static PyObject *s_inodes, *s_ops, *s_k_fsync;

#define INTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)

int winfsync_init(void)
{
    INTERN(s_inodes, "_inodes");
    INTERN(s_ops, "_ops");
    INTERN(s_k_fsync, "fsync");
    return 0;
}

int winfsync_is_fsync(const unsigned char *m, Py_ssize_t len)
{
    return len >= IN_HEADER && get_u32(m + 4) == OP_FSYNC;
}

/* Engine.remap(msg) for an FSYNC: None declined (nothing changed), else the number of
 * notifications queued ahead of the reply by this request (0); NULL with an exception
 * only if the reply could not be built after the counter moved. */
PyObject *winfsync(Engine *e, const unsigned char *m, Py_ssize_t len)
{
    PyObject *inodes = NULL, *ikey = NULL, *ops = NULL;
    if (!e->fsync_enabled || len != IN_HEADER + FSYNC_IN || get_u32(m) != (uint32_t)len ||
        get_u32(m + 36) != 0) /* extlen, padding: Python's parse decides */
        goto decline;
    uint64_t unique = get_u64(m + 8), nodeid = get_u64(m + 16);
    inodes = lean_getattr(e->fs, s_inodes);
    if (!inodes || !PyDict_Check(inodes))
        goto decline;
    ikey = PyLong_FromUnsignedLongLong(nodeid);
    if (!ikey)
        goto decline;
    PyObject *inode = PyDict_GetItemWithError(inodes, ikey); /* borrowed */
    if (!inode)
        goto decline; /* ENOENT (or a lookup error): Python's */
    ops = lean_getattr(e->fs, s_ops);
    if (!ops || !PyDict_Check(ops))
        goto decline;
    /* ---- the one change, then the reply ---- */
    if (incr_item(ops, s_k_fsync, 1) < 0)
        goto decline; /* nothing changed: a failed d[k] = v leaves d as it was */
    Py_CLEAR(inodes);
    Py_CLEAR(ikey);
    Py_CLEAR(ops);
    unsigned char reply[16];
    put_u32(reply, sizeof reply);
    put_u32(reply + 4, 0);
    put_u64(reply + 8, unique);
    pthread_mutex_lock(&e->mu);
    e->fsyncs++;
    if (e->head) { /* behind the batches queued before it, as the session orders it */
        batch_t *b = malloc(sizeof(batch_t) + sizeof reply);
        if (!b) {
            pthread_mutex_unlock(&e->mu);
            return PyErr_NoMemory(); /* the session logs it and answers EIO */
        }
        memset(b, 0, sizeof(batch_t));
        b->cap = sizeof reply;
        b->ino = nodeid;
        memcpy(b->buf, reply, sizeof reply);
        b->off[0] = 0;
        b->len[b->nmsg++] = sizeof reply;
        e->fsyncs_queued++;
        queue_and_wake(e, b); /* unlocks */
        return PyLong_FromLong(0);
    }
    pthread_mutex_unlock(&e->mu);
    ssize_t r;
    do {
        r = write(engine_reply_fd(e), reply, sizeof reply);
    } while (r < 0 && errno == EINTR);
    int err = r < 0 ? errno : 0;
    if (err && err != ENOENT && err != ENODEV) { /* as the writer counts its own */
        pthread_mutex_lock(&e->mu);
        e->write_errors++;
        e->last_write_errno = (unsigned long long)err;
        pthread_mutex_unlock(&e->mu);
    }
    return PyLong_FromLong(0);
decline:
    PyErr_Clear();
    Py_XDECREF(inodes);
    Py_XDECREF(ikey);
    Py_XDECREF(ops);
    e->fsync_declined++;
    Py_RETURN_NONE;
}
