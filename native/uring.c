/*
 * mount.server._uring_native: the transport of FUSE over io_uring for mount/server/uring_fuse.py.
 *
 * Only the mechanics are here: one io_uring with 128-byte SQEs, the ring
 * entries' buffers, laying a fetched request out as /dev/fuse would deliver it
 * (in_header, opcode header, payload -- the payload is not copied), copying a
 * reply into its entry and staging COMMIT_AND_FETCH, and one io_uring_enter that
 * submits and waits with the GIL released. Every decision (what to answer,
 * when, ordering against notifications) stays in Python; the pure-Python
 * backend in uring_fuse.py does exactly the same with struct and ctypes, and is
 * used when this module is not built. ABI: include/uapi/linux/io_uring.h and
 * linux/fuse.h 7.42 (struct fuse_uring_req_header, fuse_uring_cmd_req).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SQE_SIZE 128
#define HDR_SIZE 288     /* struct fuse_uring_req_header */
#define OP_IN 128        /* offset of op_in */
#define OP_IN_MAX 128
#define ENT_IN_OUT 256   /* offset of struct fuse_uring_ent_in_out */
#define PAYLOAD_OFF 4096 /* the payload follows the headers a page later */
#define IN_HEADER 40     /* struct fuse_in_header */
#define OUT_HEADER 16    /* struct fuse_out_header */
#define CMD_REGISTER 1
#define CMD_COMMIT_AND_FETCH 2

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

struct ent_in_out { /* struct fuse_uring_ent_in_out */
    uint64_t flags;
    uint64_t commit_id;
    uint32_t payload_sz;
    uint32_t padding;
    uint64_t reserved;
};

struct cmd_req { /* struct fuse_uring_cmd_req, in the SQE's command area */
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

typedef struct {
    PyObject_HEAD
    int ring_fd;
    int dev_fd;
    unsigned *sq_head, *sq_tail, sq_mask, sq_entries;
    unsigned *cq_head, *cq_tail, cq_mask;
    struct io_uring_cqe *cqes;
    char *sqes;
    void *ring_ptr;
    size_t ring_sz;
    size_t sqes_sz;
    unsigned tail;    /* our SQ tail, published at enter */
    unsigned pending; /* staged, not yet submitted */
    char *mem;
    size_t mem_sz, stride, payload;
    unsigned nentries, queues;
    struct iovec *iovs;
    uint64_t *uniques;
    unsigned long long enters;
} Ring;

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg,
                     size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, argsz);
}

static void ring_unmap(Ring *r)
{
    if (r->ring_ptr && r->ring_ptr != MAP_FAILED)
        munmap(r->ring_ptr, r->ring_sz);
    if (r->sqes && (void *)r->sqes != MAP_FAILED)
        munmap(r->sqes, r->sqes_sz);
    if (r->ring_fd >= 0)
        close(r->ring_fd);
    /* the entry buffers last as long as the object: a memoryview of a request
       never outlives the handler that was given it */
    if (r->mem && (void *)r->mem != MAP_FAILED)
        munmap(r->mem, r->mem_sz);
    PyMem_Free(r->iovs);
    PyMem_Free(r->uniques);
    r->ring_ptr = NULL;
    r->sqes = NULL;
    r->ring_fd = -1;
    r->mem = NULL;
    r->iovs = NULL;
    r->uniques = NULL;
}

static void Ring_dealloc(Ring *r)
{
    ring_unmap(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static int Ring_init(Ring *r, PyObject *args, PyObject *kw)
{
    static char *names[] = {"dev_fd", "queues", "depth", "payload", "sq_entries", NULL};
    int dev_fd;
    unsigned queues, depth, sq_entries = 64;
    Py_ssize_t payload;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iIIn|I", names, &dev_fd, &queues, &depth,
                                     &payload, &sq_entries))
        return -1;
    if (queues == 0 || depth == 0 || payload < 8192 || queues * depth > 65536) {
        PyErr_SetString(PyExc_ValueError, "bad ring geometry");
        return -1;
    }
    ring_unmap(r);
    r->dev_fd = dev_fd;
    r->queues = queues;
    r->nentries = queues * depth;
    r->payload = (size_t)payload;

    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = sq_entries * 4;
    r->ring_fd = sys_setup(sq_entries, &p);
    if (r->ring_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (!(p.features & IORING_FEAT_SINGLE_MMAP) || !(p.features & IORING_FEAT_EXT_ARG)) {
        ring_unmap(r);
        PyErr_SetString(PyExc_OSError, "io_uring without SINGLE_MMAP/EXT_ARG (kernel < 5.11)");
        return -1;
    }
    size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    r->ring_sz = sq_sz > cq_sz ? sq_sz : cq_sz;
    r->ring_ptr = mmap(NULL, r->ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                       r->ring_fd, IORING_OFF_SQ_RING);
    r->sqes_sz = p.sq_entries * SQE_SIZE;
    r->sqes = mmap(NULL, r->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   r->ring_fd, IORING_OFF_SQES);
    if (r->ring_ptr == MAP_FAILED || (void *)r->sqes == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        ring_unmap(r);
        return -1;
    }
    char *base = r->ring_ptr;
    r->sq_head = (unsigned *)(base + p.sq_off.head);
    r->sq_tail = (unsigned *)(base + p.sq_off.tail);
    r->sq_mask = *(unsigned *)(base + p.sq_off.ring_mask);
    r->sq_entries = p.sq_entries;
    unsigned *array = (unsigned *)(base + p.sq_off.array);
    for (unsigned i = 0; i < p.sq_entries; i++)
        array[i] = i;
    r->cq_head = (unsigned *)(base + p.cq_off.head);
    r->cq_tail = (unsigned *)(base + p.cq_off.tail);
    r->cq_mask = *(unsigned *)(base + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(base + p.cq_off.cqes);
    r->tail = *r->sq_tail;
    r->pending = 0;

    r->stride = PAYLOAD_OFF + r->payload;
    r->mem_sz = r->stride * r->nentries;
    r->mem = mmap(NULL, r->mem_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    r->iovs = PyMem_Calloc(2 * r->nentries, sizeof(struct iovec));
    r->uniques = PyMem_Calloc(r->nentries, sizeof(uint64_t));
    if ((void *)r->mem == MAP_FAILED || !r->iovs || !r->uniques) {
        ring_unmap(r);
        PyErr_NoMemory();
        return -1;
    }
    for (unsigned i = 0; i < r->nentries; i++) {
        r->iovs[2 * i].iov_base = r->mem + i * r->stride;
        r->iovs[2 * i].iov_len = HDR_SIZE;
        r->iovs[2 * i + 1].iov_base = r->mem + i * r->stride + PAYLOAD_OFF;
        r->iovs[2 * i + 1].iov_len = r->payload;
    }
    return 0;
}

static int submit(Ring *r, unsigned wait, int timeout_ms);

/* A free SQE, zeroed; the SQ is flushed first when it is full. */
static char *next_sqe(Ring *r)
{
    if (r->pending >= r->sq_entries && submit(r, 0, -1) < 0)
        return NULL;
    char *sqe = r->sqes + (size_t)(r->tail & r->sq_mask) * SQE_SIZE;
    r->tail++;
    r->pending++;
    memset(sqe, 0, SQE_SIZE);
    return sqe;
}

static int stage_cmd(Ring *r, unsigned i, unsigned op)
{
    char *p = next_sqe(r);
    if (!p)
        return -1;
    struct io_uring_sqe *sqe = (struct io_uring_sqe *)p;
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = r->dev_fd;
    sqe->cmd_op = op;
    sqe->addr = (uint64_t)(uintptr_t)&r->iovs[2 * i];
    sqe->len = 2;
    sqe->user_data = i;
    struct cmd_req *c = (struct cmd_req *)(p + 48);
    c->commit_id = op == CMD_COMMIT_AND_FETCH ? r->uniques[i] : 0;
    c->qid = (uint16_t)(i % r->queues);
    return 0;
}

/* Submit what is staged; wait for `wait` completions (timeout_ms < 0: no limit).
   1 when it returned normally, 0 on timeout/signal, -1 with errno otherwise. */
static int submit(Ring *r, unsigned wait, int timeout_ms)
{
    __atomic_store_n(r->sq_tail, r->tail, __ATOMIC_RELEASE);
    unsigned n = r->pending;
    int ret;
    r->enters++;
    if (wait && timeout_ms >= 0) {
        struct __kernel_timespec ts = {timeout_ms / 1000, (long long)(timeout_ms % 1000) * 1000000};
        struct io_uring_getevents_arg arg;
        memset(&arg, 0, sizeof(arg));
        arg.ts = (uint64_t)(uintptr_t)&ts;
        ret = sys_enter(r->ring_fd, n, wait, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                        &arg, sizeof(arg));
    } else {
        ret = sys_enter(r->ring_fd, n, wait, IORING_ENTER_GETEVENTS, NULL, 0);
    }
    if (ret < 0) {
        if (errno == ETIME || errno == EINTR || errno == EAGAIN || errno == EBUSY) {
            r->pending = r->tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
            return 0;
        }
        return -1;
    }
    r->pending -= (unsigned)ret < n ? (unsigned)ret : n;
    return 1;
}

static int entry_arg(Ring *r, PyObject *arg, unsigned *i);

/* register(i): stage REGISTER of entry i (its queue is i % queues) */
static PyObject *Ring_register(Ring *r, PyObject *arg)
{
    unsigned i;
    if (entry_arg(r, arg, &i) < 0)
        return NULL;
    if (stage_cmd(r, i, CMD_REGISTER) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *Ring_poll(Ring *r, PyObject *args)
{
    int fd;
    unsigned long long ud;
    if (!PyArg_ParseTuple(args, "iK", &fd, &ud))
        return NULL;
    char *p = next_sqe(r);
    if (!p)
        return PyErr_SetFromErrno(PyExc_OSError);
    struct io_uring_sqe *sqe = (struct io_uring_sqe *)p;
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    sqe->len = IORING_POLL_ADD_MULTI;
    sqe->poll32_events = POLLIN;
    sqe->user_data = ud;
    Py_RETURN_NONE;
}

/* wait(min_complete, timeout_ms=-1) -> list of (user_data, res, flags) */
static PyObject *Ring_wait(Ring *r, PyObject *args)
{
    unsigned wait = 0;
    int timeout_ms = -1;
    if (!PyArg_ParseTuple(args, "|Ii", &wait, &timeout_ms))
        return NULL;
    unsigned head = *r->cq_head;
    if (wait && head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
        wait = 0; /* completions are there already: only submit */
    int ret;
    {
        Py_BEGIN_ALLOW_THREADS
        ret = submit(r, wait, timeout_ms);
        Py_END_ALLOW_THREADS
        if (ret < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
    }
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    for (; head != tail; head++) {
        struct io_uring_cqe *c = &r->cqes[head & r->cq_mask];
        PyObject *t = Py_BuildValue("(KiI)", (unsigned long long)c->user_data, c->res, c->flags);
        if (!t || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
            return NULL;
        }
        Py_DECREF(t);
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    return out;
}

static int entry_arg(Ring *r, PyObject *arg, unsigned *i)
{
    unsigned long v = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred())
        return -1;
    if (v >= r->nentries) {
        PyErr_SetString(PyExc_IndexError, "no such ring entry");
        return -1;
    }
    *i = (unsigned)v;
    return 0;
}

/* request(i) -> memoryview of the request laid out as /dev/fuse delivers it, or
   None when its sizes do not add up (the caller answers EIO to unique(i)). */
static PyObject *Ring_request(Ring *r, PyObject *arg)
{
    unsigned i;
    if (entry_arg(r, arg, &i) < 0)
        return NULL;
    char *h = r->mem + (size_t)i * r->stride;
    struct ent_in_out eio;
    uint32_t len;
    memcpy(&eio, h + ENT_IN_OUT, sizeof(eio));
    memcpy(&len, h, sizeof(len));
    r->uniques[i] = eio.commit_id;
    int64_t op_sz = (int64_t)len - IN_HEADER - (int64_t)eio.payload_sz;
    if (op_sz < 0 || op_sz > OP_IN_MAX || eio.payload_sz > r->payload)
        Py_RETURN_NONE;
    char *pay = h + PAYLOAD_OFF;
    memcpy(pay - op_sz, h + OP_IN, (size_t)op_sz);
    memcpy(pay - op_sz - IN_HEADER, h, IN_HEADER);
    return PyMemoryView_FromMemory(pay - op_sz - IN_HEADER, IN_HEADER + op_sz + eio.payload_sz,
                                   PyBUF_WRITE);
}

/* headers(i), payload_view(i): entry i's buffers (tests write requests there) */
static PyObject *Ring_headers(Ring *r, PyObject *arg)
{
    unsigned i;
    if (entry_arg(r, arg, &i) < 0)
        return NULL;
    return PyMemoryView_FromMemory(r->mem + (size_t)i * r->stride, HDR_SIZE, PyBUF_WRITE);
}

static PyObject *Ring_payload_view(Ring *r, PyObject *arg)
{
    unsigned i;
    if (entry_arg(r, arg, &i) < 0)
        return NULL;
    return PyMemoryView_FromMemory(r->mem + (size_t)i * r->stride + PAYLOAD_OFF,
                                   (Py_ssize_t)r->payload, PyBUF_WRITE);
}

static PyObject *Ring_unique(Ring *r, PyObject *arg)
{
    unsigned i;
    if (entry_arg(r, arg, &i) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(r->uniques[i]);
}

/* commit(i, buffers): the reply (fuse_out_header then payload, as for writev) into
   entry i, COMMIT_AND_FETCH staged. OverflowError if it does not fit (nothing staged). */
static PyObject *Ring_commit(Ring *r, PyObject *args)
{
    unsigned i;
    PyObject *idx, *bufs;
    if (!PyArg_ParseTuple(args, "OO", &idx, &bufs) || entry_arg(r, idx, &i) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(bufs, "buffers must be a sequence");
    if (!seq)
        return NULL;
    char *h = r->mem + (size_t)i * r->stride;
    char *pay = h + PAYLOAD_OFF;
    size_t hdr = 0, pos = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_buffer b;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, k), &b, PyBUF_C_CONTIGUOUS) < 0) {
            Py_DECREF(seq);
            return NULL;
        }
        const char *src = b.buf;
        size_t len = (size_t)b.len;
        if (hdr < OUT_HEADER) {
            size_t take = len < OUT_HEADER - hdr ? len : OUT_HEADER - hdr;
            memcpy(h + hdr, src, take);
            hdr += take;
            src += take;
            len -= take;
        }
        if (pos + len > r->payload) {
            PyBuffer_Release(&b);
            Py_DECREF(seq);
            PyErr_Format(PyExc_OverflowError, "reply larger than the entry's %zu bytes", r->payload);
            return NULL;
        }
        memcpy(pay + pos, src, len);
        pos += len;
        PyBuffer_Release(&b);
    }
    Py_DECREF(seq);
    if (hdr < OUT_HEADER) {
        PyErr_SetString(PyExc_ValueError, "reply shorter than fuse_out_header");
        return NULL;
    }
    uint32_t psz = (uint32_t)pos;
    memcpy(h + ENT_IN_OUT + 16, &psz, sizeof(psz));
    if (stage_cmd(r, i, CMD_COMMIT_AND_FETCH) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* flush(): submit what is staged now, without reaping completions. */
static PyObject *Ring_flush(Ring *r, PyObject *unused)
{
    if (!r->pending)
        Py_RETURN_NONE;
    int ret;
    Py_BEGIN_ALLOW_THREADS
    ret = submit(r, 0, -1);
    Py_END_ALLOW_THREADS
    if (ret < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *Ring_close(Ring *r, PyObject *unused)
{
    /* the rings go; the entry buffers stay until the object does (see ring_unmap) */
    if (r->ring_ptr && r->ring_ptr != MAP_FAILED)
        munmap(r->ring_ptr, r->ring_sz);
    if (r->sqes && (void *)r->sqes != MAP_FAILED)
        munmap(r->sqes, r->sqes_sz);
    if (r->ring_fd >= 0)
        close(r->ring_fd);
    r->ring_ptr = NULL;
    r->sqes = NULL;
    r->ring_fd = -1;
    Py_RETURN_NONE;
}

static PyObject *Ring_get_pending(Ring *r, void *unused) { return PyLong_FromUnsignedLong(r->pending); }
static PyObject *Ring_get_enters(Ring *r, void *unused) { return PyLong_FromUnsignedLongLong(r->enters); }
static PyObject *Ring_get_entries(Ring *r, void *unused) { return PyLong_FromUnsignedLong(r->nentries); }

static PyMethodDef Ring_methods[] = {
    {"register", (PyCFunction)Ring_register, METH_O, "register(i): stage REGISTER of entry i."},
    {"poll", (PyCFunction)Ring_poll, METH_VARARGS, "poll(fd, user_data): stage a multishot POLLIN."},
    {"wait", (PyCFunction)Ring_wait, METH_VARARGS,
     "wait(min_complete=0, timeout_ms=-1): submit, wait, the CQEs as (user_data, res, flags)."},
    {"request", (PyCFunction)Ring_request, METH_O, "request(i): the request of entry i, or None."},
    {"headers", (PyCFunction)Ring_headers, METH_O, "headers(i): entry i's 288-byte header."},
    {"payload_view", (PyCFunction)Ring_payload_view, METH_O, "payload_view(i): its payload."},
    {"unique", (PyCFunction)Ring_unique, METH_O, "unique(i): the request entry i answers."},
    {"commit", (PyCFunction)Ring_commit, METH_VARARGS, "commit(i, buffers): reply and re-arm."},
    {"flush", (PyCFunction)Ring_flush, METH_NOARGS, "Submit the staged SQEs now."},
    {"close", (PyCFunction)Ring_close, METH_NOARGS, "Close the io_uring (the kernel cancels)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Ring_getset[] = {
    {"pending", (getter)Ring_get_pending, NULL, "SQEs staged, not submitted", NULL},
    {"enters", (getter)Ring_get_enters, NULL, "io_uring_enter calls", NULL},
    {"entries", (getter)Ring_get_entries, NULL, "ring entries (queues x depth)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *Ring_new(PyTypeObject *t, PyObject *a, PyObject *k)
{
    Ring *r = (Ring *)t->tp_alloc(t, 0);
    if (r)
        r->ring_fd = -1;
    return (PyObject *)r;
}

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mount.server._uring_native.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ring(dev_fd, queues, depth, payload, sq_entries=64): buffers for queues x depth FUSE ring "
               "entries (registered one by one) in one io_uring",
    .tp_new = Ring_new,
    .tp_init = (initproc)Ring_init,
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_methods = Ring_methods,
    .tp_getset = Ring_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "mount.server._uring_native",
                                    "FUSE over io_uring transport (see native/uring.c)", -1,
                                    NULL};

PyMODINIT_FUNC PyInit__uring_native(void)
{
    if (PyType_Ready(&RingType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&RingType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0) {
        Py_DECREF(&RingType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
