/*
 * CREATE and UNLINK of regular files, MKDIR and RMDIR, FORGET and BATCH_FORGET, in the
 * hot path (part of mount.server._hotpath).
 *
 * Why (docs/performance.md, issue 15): a create+close is LOOKUP, CREATE, GETATTR of
 * the directory and RELEASE; every one of them but CREATE was already answered in
 * C, and CREATE alone cost ~25 us of Python, 83 % of the daemon's CPU of a
 * create+close. An unlink is UNLINK (~10 us of Python), GETATTR, FORGET (~3 us of
 * Python, or a BATCH_FORGET).
 *
 * This file is #included by native/hotpath.c (one translation unit: it uses that
 * file's context, attribute cache, reply helpers and interned names) and keeps the
 * two operations apart from the READ/WRITE code. Same contract as the rest of the
 * engine: every check first, then the same changes to the same Python objects the
 * Python path makes (FileOps.create, NamespaceOps.unlink and the FsCore helpers they
 * call), in an order that asks the clock the same number of times; anything
 * unusual is declined untouched and answered in Python.
 *
 * Permissions: the mount always has default_permissions, so the kernel checks
 * write+exec on the directory and the sticky bit before sending CREATE or UNLINK;
 * the Python path checks neither, and neither does this (the live tests check
 * the kernel's refusals on both paths).
 */

#include <sys/mman.h> /* madvise: an evicted file's frames (reap_pages_apply) */

static PyObject *m_next_ino, *m_max_inodes, *m_free_ispace, *m_backing, *m_new_mapping,
    *m_by_cookie_, *m_cookies_, *m_dead_, *m_next_cookie_, *m_acl_default, *m_create_op,
    *m_unlink_op, *m_budget_fs, *m_reclaimed_n, *m_xattr_space, *m_defer_evictions,
    *m_evict_later, *m_forget_op, *m_append, *m_mkdir_op, *m_rmdir_op, *m_parent,
    *m_evicted_n, *m_xattrs, *m_rmap, *m_keys_, *m_nr_unmaps, *m_popleft, *m_linkable,
    *m_acl_access;

#define BOGO_INODE_SIZE 1024
#define CREATE_IN 16 /* fuse_create_in: flags, mode, umask, open_flags */
#define MKDIR_IN 8   /* fuse_mkdir_in: mode, umask */
#define CREATE_OUT (ENTRY_OUT + OPEN_OUT)
#define S_ISVTX_ 01000

static int reap_pages_intern(void);

static int hotmeta_intern(void)
{
#define MINTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)
    MINTERN(m_next_ino, "_next_ino");
    MINTERN(m_max_inodes, "max_inodes");
    MINTERN(m_free_ispace, "free_ispace");
    MINTERN(m_backing, "_backing");
    MINTERN(m_new_mapping, "new_mapping");
    MINTERN(m_by_cookie_, "_by_cookie");
    MINTERN(m_cookies_, "_cookies");
    MINTERN(m_dead_, "_dead");
    MINTERN(m_next_cookie_, "_next_cookie");
    MINTERN(m_acl_default, "acl_default");
    MINTERN(m_create_op, "create");
    MINTERN(m_unlink_op, "unlink");
    MINTERN(m_budget_fs, "budget");
    MINTERN(m_reclaimed_n, "_reclaimed");
    MINTERN(m_xattr_space, "xattr_space");
    MINTERN(m_defer_evictions, "defer_evictions");
    MINTERN(m_evict_later, "evict_later");
    MINTERN(m_forget_op, "forget");
    MINTERN(m_append, "append");
    MINTERN(m_mkdir_op, "mkdir");
    MINTERN(m_rmdir_op, "rmdir");
    MINTERN(m_parent, "parent");
    MINTERN(m_evicted_n, "_evicted");
    MINTERN(m_xattrs, "xattrs");
    MINTERN(m_rmap, "rmap");
    MINTERN(m_keys_, "_keys");
    MINTERN(m_nr_unmaps, "nr_unmaps");
    MINTERN(m_popleft, "popleft");
    MINTERN(m_linkable, "linkable");
    MINTERN(m_acl_access, "acl_access");
#undef MINTERN
    return reap_pages_intern();
}

/* The name of a LOOKUP/UNLINK/CREATE body as codec.plain_name takes it: 1 to 255
 * bytes up to a NUL inside the message; its length, or -1 (declined: the generic
 * parser answers). */
static Py_ssize_t plain_name_len(const unsigned char *name, Py_ssize_t room)
{
    const unsigned char *nul = room > 0 ? memchr(name, 0, (size_t)room) : NULL;
    if (!nul)
        return -1;
    Py_ssize_t len = nul - name;
    return (len < 1 || len > 255) ? -1 : len;
}

/* A directory inode of plain types: its Directory and that Directory's _names */
static int plain_dir(ctx_t *c, PyObject *inode, PyObject **dir, PyObject **names)
{
    Engine *e = c->e;
    if ((PyObject *)Py_TYPE(inode) != e->t_inode)
        return -1;
    *dir = ga(c, inode, s_dir);
    if (!*dir || (PyObject *)Py_TYPE(*dir) != e->t_dir)
        return -1;
    *names = ga(c, *dir, s_names_);
    return (*names && PyDict_CheckExact(*names)) ? 0 : -1;
}

/* ------------------------------------------------------- CREATE and MKDIR */

/* A new inode's name in its directory, checked (FsCore._check_name, NamespaceOps.
 * _prepare_new, FsCore._new_child, _alloc_inode) and its objects prepared, before
 * any change: the parent and its Directory, the name, the inode number and the
 * directory's next cookie. */
typedef struct {
    PyObject *fs, *inodes, *parent, *dir, *names, *by_cookie, *cookies, *key, *ino_o,
        *cookie_o, *ent, *uid_o, *gid_o;
    long long max_inodes, free_ispace, next_ino, cookie;
} newchild_t;

/* 0 ready, -1 declined: a name the codec or _check_name refuse ('/' inside, "."
 * and "..", > 255 bytes, no NUL), an existing name, a parent that is not a plain
 * directory, removed (nlink 0), with chattr flags, set-gid (the gid and mode rules
 * of _new_child) or a default ACL (acl.inherit); nr_inodes exhausted (ENOSPC); an
 * inode number already in the table. */
static int newchild_check(ctx_t *c, const unsigned char *m, Py_ssize_t n, Py_ssize_t at,
                          uint64_t nodeid, newchild_t *k)
{
    Engine *e = c->e;
    const unsigned char *name = m + at;
    Py_ssize_t len = plain_name_len(name, n - at);
    if (len < 0 || memchr(name, '/', (size_t)len))
        return -1;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return -1;
    k->fs = e->fs;
    k->inodes = ga(c, k->fs, s_inodes);
    if (!k->inodes || !PyDict_CheckExact(k->inodes))
        return -1;
    k->parent = inode_of(c, k->inodes, nodeid);
    if (!k->parent || plain_dir(c, k->parent, &k->dir, &k->names) < 0)
        return -1;
    k->key = keep(c, PyBytes_FromStringAndSize((const char *)name, len));
    if (!k->key || PyDict_Contains(k->names, k->key) != 0)
        return -1;
    long long pnlink, pmode, pfsflags;
    if (ga_ll(k->parent, s_nlink, &pnlink) < 0 || pnlink == 0 ||
        ga_ll(k->parent, s_mode, &pmode) < 0 || (pmode & S_ISGID_) ||
        ga_ll(k->parent, s_fsflags, &pfsflags) < 0 || pfsflags != 0)
        return -1;
    PyObject *acl = ga(c, k->parent, m_acl_default);
    if (!acl || acl != Py_None)
        return -1;
    k->free_ispace = 0;
    if (ga_ll(k->fs, m_max_inodes, &k->max_inodes) < 0 ||
        (k->max_inodes && (ga_ll(k->fs, m_free_ispace, &k->free_ispace) < 0 ||
                           k->free_ispace < BOGO_INODE_SIZE)))
        return -1;
    if (ga_ll(k->fs, m_next_ino, &k->next_ino) < 0 || k->next_ino < 0 ||
        k->next_ino == LLONG_MAX)
        return -1;
    k->ino_o = keep(c, PyLong_FromLongLong(k->next_ino));
    if (!k->ino_o || PyDict_Contains(k->inodes, k->ino_o) != 0)
        return -1;
    /* the directory's cookie state (Directory.add) */
    k->by_cookie = ga(c, k->dir, m_by_cookie_);
    k->cookies = k->by_cookie ? ga(c, k->dir, m_cookies_) : NULL;
    if (!k->cookies || !PyDict_CheckExact(k->by_cookie) || !PyList_CheckExact(k->cookies) ||
        ga_ll(k->dir, m_next_cookie_, &k->cookie) < 0 || k->cookie == LLONG_MAX)
        return -1;
    k->uid_o = keep(c, PyLong_FromUnsignedLong(get_u32(m + 24)));
    k->gid_o = k->uid_o ? keep(c, PyLong_FromUnsignedLong(get_u32(m + 28))) : NULL;
    k->cookie_o = k->gid_o ? keep(c, PyLong_FromLongLong(k->cookie)) : NULL;
    k->ent = k->cookie_o ? keep(c, PyTuple_Pack(2, k->cookie_o, k->ino_o)) : NULL;
    return k->ent ? 0 : -1;
}

/* Inode(ino, mode, uid, gid, now): _alloc_inode's, with its clock reading */
static PyObject *newchild_inode(ctx_t *c, newchild_t *k, long long mode, PyObject **now)
{
    PyObject *mode_o = keep(c, PyLong_FromLongLong(mode));
    *now = mode_o ? now_ns(c) : NULL;
    if (!*now)
        return NULL;
    PyObject *iargs[5] = {k->ino_o, mode_o, k->uid_o, k->gid_o, *now};
    return keep(c, PyObject_Vectorcall(c->e->t_inode, iargs, 5, NULL));
}

/* Phase 2 of a new child: _alloc_inode's ispace, _next_ino and table entry, then
 * _link_child's Directory.add (_next_cookie, _names, _by_cookie, _cookies) and the
 * parent's mtime and ctime from a second clock reading. The caller has set the
 * child's own fields (mapping, nlink; a directory's parent). -1 on failure. */
static int newchild_link(ctx_t *c, newchild_t *k, PyObject *child)
{
    if (k->max_inodes && sa_ll(k->fs, m_free_ispace, k->free_ispace - BOGO_INODE_SIZE) < 0)
        return -1;
    if (sa_ll(k->fs, m_next_ino, k->next_ino + 1) < 0 ||
        PyDict_SetItem(k->inodes, k->ino_o, child) < 0)
        return -1;
    if (sa_ll(k->dir, m_next_cookie_, k->cookie + 1) < 0 ||
        PyDict_SetItem(k->names, k->key, k->ent) < 0 ||
        PyDict_SetItem(k->by_cookie, k->cookie_o, k->key) < 0 ||
        PyList_Append(k->cookies, k->cookie_o) < 0)
        return -1;
    PyObject *now2 = now_ns(c);
    if (!now2 || attr_set(k->parent, s_mtime_ns, now2) < 0 ||
        attr_set(k->parent, s_ctime_ns, now2) < 0)
        return -1;
    return 0;
}

/* fuse_entry_out of the new child at o (LOOKUP's layout); -1 on failure */
static int newchild_entry(ctx_t *c, newchild_t *k, PyObject *child, unsigned char *o)
{
    if (attr_of(c, child, o + 40) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "hotpath: the new inode has no plain attr");
        return -1;
    }
    entry_head(c->e, o, (uint64_t)k->next_ino);
    return 0;
}

static int fn_create_ok(Engine *e, PyObject *backing);
static PyObject *fn_inode(ctx_t *c, PyObject *ino, PyObject *mode, PyObject *uid,
                          PyObject *gid, PyObject *now);
static PyObject *fn_mapping(ctx_t *c, PyObject *backing);
static PyObject *fn_handle(ctx_t *c, PyObject *ino, PyObject *flags);

/*
 * CREATE of a new regular file (Operations.handle_fast -> FileOps.create, then
 * _create_reply): _ops["create"] += 1; the new child (newchild_*) with a Mapping
 * from fs._backing.new_mapping() and nlink 1; _new_handle's Handle and nopen;
 * _entry's nlookup; the reply's FOPEN flags as OPEN computes them
 * (open_keeps_cache). The mode is S_IFREG | mode & 07777 less the umask's
 * permission bits (acl.inherit without a default ACL).
 *
 * Declined: what newchild_check declines -- an existing name among them (O_EXCL's
 * EEXIST, or the open of the existing file) --, O_APPEND (-o writeback_cache
 * strips it: _handle_flags), an fh already in its table, a message of another
 * length. The request's open_flags are ignored, as FileOps.create ignores them.
 */
static int do_create(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                     uint64_t nodeid)
{
    Engine *e = c->e;
    newchild_t k;
    if (n <= IN_HEADER + CREATE_IN)
        DECLINE();
    uint32_t flags = get_u32(m + IN_HEADER), mode_in = get_u32(m + IN_HEADER + 4);
    uint32_t umask = get_u32(m + IN_HEADER + 8);
    if (flags & O_APPEND_)
        DECLINE();
    if (newchild_check(c, m, n, IN_HEADER + CREATE_IN, nodeid, &k) < 0)
        DECLINE();
    PyObject *handles = ga(c, k.fs, s_handles);
    long long next_fh;
    if (!handles || !PyDict_CheckExact(handles) ||
        ga_ll(k.fs, s_next_fh, &next_fh) < 0 || next_fh < 0 || next_fh == LLONG_MAX)
        DECLINE();
    PyObject *fh_o = keep(c, PyLong_FromLongLong(next_fh));
    if (!fh_o || PyDict_Contains(handles, fh_o) != 0)
        DECLINE();
    PyObject *backing = ga(c, k.fs, m_backing);
    PyObject *fl_o = backing ? keep(c, PyLong_FromUnsignedLong(flags)) : NULL;
    if (!fl_o)
        DECLINE();
    long long mode = (S_IFREG_ | (mode_in & 07777)) & ~(long long)(umask & 0777);
    /* ---- the objects, made before any change (no side effect but the clock) ----
     * from C where their types are the plain ones (fn_create_ok), else by calling
     * their constructors; either way one clock reading, the Inode's */
    PyObject *now, *child, *mapping, *h;
    if (fn_create_ok(e, backing)) {
        PyObject *mode_o = keep(c, PyLong_FromLongLong(mode));
        now = mode_o ? now_ns(c) : NULL;
        child = now ? fn_inode(c, k.ino_o, mode_o, k.uid_o, k.gid_o, now) : NULL;
        mapping = child ? fn_mapping(c, backing) : NULL;
        h = mapping ? fn_handle(c, k.ino_o, fl_o) : NULL;
        if (!h)
            return -1;
        e->n_fast_new++;
    } else {
        child = newchild_inode(c, &k, mode, &now);
        if (!child)
            return -1;
        mapping = keep(c, PyObject_CallMethodNoArgs(backing, m_new_mapping));
        if (!mapping)
            return -1;
        PyObject *hargs[3] = {k.ino_o, fl_o, Py_False};
        h = keep(c, PyObject_Vectorcall(e->t_handle, hargs, 3, NULL));
        if (!h)
            return -1;
    }
    /* ---- phase 2 ---- */
    if (count_op(c, m_create_op) < 0 || attr_set(child, s_mapping, mapping) < 0 ||
        sa_ll(child, s_nlink, 1) < 0 || newchild_link(c, &k, child) < 0)
        return -1;
    if (sa_ll(k.fs, s_next_fh, next_fh + 1) < 0 || PyDict_SetItem(handles, fh_o, h) < 0 ||
        sa_ll(child, s_nopen, 1) < 0 || sa_ll(child, s_nlookup, 1) < 0)
        return -1;
    long long t = PyLong_AsLongLong(now);
    if (t == -1 && PyErr_Occurred())
        return -1;
    uint32_t oflags;
    if (open_keeps_cache(c, t, t, t, &oflags) < 0)
        return -1;
    unsigned char *o = c->hdr + OUT_HEADER;
    if (newchild_entry(c, &k, child, o) < 0)
        return -1;
    put_u64(o + ENTRY_OUT, (uint64_t)next_fh);
    put_u32(o + ENTRY_OUT + 8, oflags);
    put_u32(o + ENTRY_OUT + 12, 0);
    reply_header(c, unique, CREATE_OUT);
    c->iov[0].iov_len = OUT_HEADER + CREATE_OUT;
    e->n_create++;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/*
 * MKDIR (Operations._mkdir -> NamespaceOps.mkdir): _ops["mkdir"] += 1; the new
 * child (newchild_*) of mode S_IFDIR | mode & 07777 less the umask's permission
 * bits, whose Directory Inode.__init__ makes; _link_child's child.parent, nlink 2
 * and the parent's nlink + 1; _entry's nlookup. Declined: what newchild_check
 * declines (EEXIST among them), a message of another length.
 */
static int do_mkdir(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                    uint64_t nodeid)
{
    Engine *e = c->e;
    newchild_t k;
    if (n <= IN_HEADER + MKDIR_IN)
        DECLINE();
    uint32_t mode_in = get_u32(m + IN_HEADER), umask = get_u32(m + IN_HEADER + 4);
    if (newchild_check(c, m, n, IN_HEADER + MKDIR_IN, nodeid, &k) < 0)
        DECLINE();
    long long pnlink;
    PyObject *pino = ga(c, k.parent, s_ino);
    if (!pino || ga_ll(k.parent, s_nlink, &pnlink) < 0 || pnlink == LLONG_MAX)
        DECLINE();
    long long mode = (S_IFDIR_ | (mode_in & 07777)) & ~(long long)(umask & 0777);
    PyObject *now;
    PyObject *child = newchild_inode(c, &k, mode, &now);
    if (!child)
        return -1;
    /* ---- phase 2 ---- */
    if (count_op(c, m_mkdir_op) < 0 || attr_set(child, m_parent, pino) < 0 ||
        sa_ll(child, s_nlink, 2) < 0 || sa_ll(k.parent, s_nlink, pnlink + 1) < 0 ||
        newchild_link(c, &k, child) < 0 || sa_ll(child, s_nlookup, 1) < 0)
        return -1;
    unsigned char *o = c->hdr + OUT_HEADER;
    if (newchild_entry(c, &k, child, o) < 0)
        return -1;
    reply_header(c, unique, ENTRY_OUT);
    c->iov[0].iov_len = OUT_HEADER + ENTRY_OUT;
    e->n_mkdir++;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/* ------------------------------------------------------- UNLINK and RMDIR */

/* A name about to be removed (NamespaceOps.unlink / rmdir), checked before any
 * change: the parent and its Directory's state, the entry, the victim inode. */
typedef struct {
    PyObject *fs, *parent, *dir, *names, *key, *cookie_o, *victim, *by_cookie, *cookies;
    long long vino, dead, max_inodes, free_ispace, xspace, reclaimed_n;
} victim_t;

/* 0 ready, -1 declined: a name the codec refuses, a parent that is not a plain
 * directory, a missing name (ENOENT), a victim of an unexpected type or the root,
 * chattr flags on the directory or the victim (fsflags.check_dir_remove's EPERM),
 * a victim already reclaimed, an entry Directory.remove would fail on. */
static int victim_check(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t nodeid,
                        victim_t *v)
{
    Engine *e = c->e;
    const unsigned char *name = m + IN_HEADER;
    Py_ssize_t len = plain_name_len(name, n - IN_HEADER);
    if (len < 0)
        return -1;
    v->fs = e->fs;
    PyObject *inodes = ga(c, v->fs, s_inodes);
    if (!inodes || !PyDict_CheckExact(inodes))
        return -1;
    v->parent = inode_of(c, inodes, nodeid);
    if (!v->parent || plain_dir(c, v->parent, &v->dir, &v->names) < 0)
        return -1;
    v->key = keep(c, PyBytes_FromStringAndSize((const char *)name, len));
    if (!v->key)
        return -1;
    PyObject *ent = PyDict_GetItemWithError(v->names, v->key); /* (cookie, ino) */
    if (!ent || !PyTuple_CheckExact(ent) || PyTuple_GET_SIZE(ent) != 2)
        return -1;
    ent = keep(c, Py_NewRef(ent));
    v->cookie_o = PyTuple_GET_ITEM(ent, 0);
    PyObject *ino_o = PyTuple_GET_ITEM(ent, 1);
    v->vino = PyLong_AsLongLong(ino_o);
    if (v->vino == -1 && PyErr_Occurred())
        return -1;
    PyObject *victim = PyDict_GetItemWithError(inodes, ino_o);
    if (!victim || (PyObject *)Py_TYPE(victim) != e->t_inode || v->vino == ROOT_INO)
        return -1;
    v->victim = keep(c, Py_NewRef(victim));
    long long pfsflags, vfsflags;
    if (!v->victim || ga_ll(v->parent, s_fsflags, &pfsflags) < 0 || pfsflags != 0 ||
        ga_ll(v->victim, s_fsflags, &vfsflags) < 0 || vfsflags != 0 ||
        ga_ll(v->victim, m_xattr_space, &v->xspace) < 0 || v->xspace < 0)
        return -1;
    PyObject *rec = ga(c, v->victim, s_reclaimed);
    if (!rec || rec != Py_False)
        return -1;
    v->free_ispace = 0;
    if (ga_ll(v->fs, m_max_inodes, &v->max_inodes) < 0 ||
        (v->max_inodes && ga_ll(v->fs, m_free_ispace, &v->free_ispace) < 0) ||
        ga_ll(v->fs, m_reclaimed_n, &v->reclaimed_n) < 0)
        return -1;
    /* Directory.remove's state */
    v->by_cookie = ga(c, v->dir, m_by_cookie_);
    v->cookies = v->by_cookie ? ga(c, v->dir, m_cookies_) : NULL;
    if (!v->cookies || !PyDict_CheckExact(v->by_cookie) || !PyList_CheckExact(v->cookies) ||
        ga_ll(v->dir, m_dead_, &v->dead) < 0 || v->dead == LLONG_MAX)
        return -1;
    return PyDict_Contains(v->by_cookie, v->cookie_o) == 1 ? 0 : -1;
}

/* Phase 2 of a removal: Directory.remove (the entry, its cookie, the tombstone
 * count and the lazy compaction of _cookies), then the parent's mtime and ctime
 * from one clock reading, returned (kept in c); NULL on failure. */
static PyObject *victim_remove(ctx_t *c, victim_t *v)
{
    if (PyDict_DelItem(v->names, v->key) < 0 || PyDict_DelItem(v->by_cookie, v->cookie_o) < 0)
        return NULL;
    long long dead = v->dead + 1;
    if (dead > 32 && dead > PyDict_GET_SIZE(v->names)) {
        Py_ssize_t nc = PyList_GET_SIZE(v->cookies);
        PyObject *live = keep(c, PyList_New(0));
        if (!live)
            return NULL;
        for (Py_ssize_t i = 0; i < nc; i++) {
            PyObject *ck = PyList_GET_ITEM(v->cookies, i);
            int in = PyDict_Contains(v->by_cookie, ck);
            if (in < 0 || (in && PyList_Append(live, ck) < 0))
                return NULL;
        }
        if (attr_set(v->dir, m_cookies_, live) < 0)
            return NULL;
        dead = 0;
    }
    if (sa_ll(v->dir, m_dead_, dead) < 0)
        return NULL;
    PyObject *now = now_ns(c);
    if (!now || attr_set(v->parent, s_mtime_ns, now) < 0 ||
        attr_set(v->parent, s_ctime_ns, now) < 0)
        return NULL;
    return now;
}

/* FsCore._reclaim's bookkeeping common to every inode: reclaimed, ispace and xattr
 * space back (free_ispace as it stands now), _reclaimed += 1. -1 on failure. */
static int victim_reclaimed(ctx_t *c, victim_t *v, long long free_ispace)
{
    if (attr_set(v->victim, s_reclaimed, Py_True) < 0)
        return -1;
    if (v->max_inodes &&
        sa_ll(v->fs, m_free_ispace, free_ispace + BOGO_INODE_SIZE + v->xspace) < 0)
        return -1;
    return sa_ll(v->fs, m_reclaimed_n, v->reclaimed_n + 1);
}

/*
 * UNLINK of a regular file's name (NamespaceOps.unlink): _ops["unlink"] += 1;
 * victim_remove; the victim's ctime (the same clock reading); _drop_link: a name
 * of a file with other links gives its ispace slot back, nlink -= 1; the last
 * name of a closed file is reclaimed (FsCore._reclaim: its pages uncharged from
 * size=, its mapping moved to a private Budget, victim_reclaimed).
 *
 * Declined: what victim_check declines, a victim that is not a plain regular file
 * (directories' EISDIR, symlinks, device nodes), a window file or a window's
 * object, an eviction (the kernel holds no lookup of the victim: Python frees
 * it), a mapping not charged to the mount's Budget, long-symlink pages.
 */
static int do_unlink(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                     uint64_t nodeid)
{
    Engine *e = c->e;
    victim_t v;
    if (victim_check(c, m, n, nodeid, &v) < 0)
        DECLINE();
    PyObject *victim = v.victim;
    long long vmode, nlink, nlookup, nopen, spages;
    if (ga_ll(victim, s_mode, &vmode) < 0 || (vmode & S_IFMT_) != S_IFREG_ ||
        ga_ll(victim, s_nlink, &nlink) < 0 || nlink < 1 ||
        ga_ll(victim, s_nlookup, &nlookup) < 0 || nlookup < 0 ||
        ga_ll(victim, s_nopen, &nopen) < 0 || nopen < 0 ||
        ga_ll(victim, s_symlink_pages, &spages) < 0 || spages != 0)
        DECLINE();
    if (window_file(c, (uint64_t)v.vino) != 0)
        DECLINE();
    int reclaim = nlink == 1 && nopen == 0;
    if (reclaim && nlookup == 0)
        DECLINE(); /* _maybe_evict drops it now: Python's */
    /* the reclaim's objects: the mount's Budget must be the mapping's */
    PyObject *budget = NULL, *mapping = NULL, *pages = NULL, *private = NULL;
    long long nrpages = 0, used = 0;
    if (reclaim) {
        budget = ga(c, v.fs, m_budget_fs);
        mapping = budget ? ga(c, victim, s_mapping) : NULL;
        if (!mapping || (PyObject *)Py_TYPE(mapping) != e->t_mapping ||
            (PyObject *)Py_TYPE(budget) != e->t_budget)
            DECLINE();
        PyObject *mb = ga(c, mapping, s_budget);
        pages = mb ? ga(c, mapping, s_pages) : NULL;
        if (!pages || mb != budget || (PyObject *)Py_TYPE(pages) != e->t_pages ||
            ga_ll(pages, s_nrpages, &nrpages) < 0 || ga_ll(budget, s_used_pages, &used) < 0 ||
            nrpages < 0 || nrpages > used)
            DECLINE(); /* Budget.uncharge's ValueError: Python's */
        PyObject *zero = keep(c, PyLong_FromLong(0));
        private = zero ? keep(c, PyObject_Vectorcall(e->t_budget, &zero, 1, NULL)) : NULL;
        if (!private)
            DECLINE();
    }
    /* ---- phase 2 ---- */
    if (count_op(c, m_unlink_op) < 0)
        return -1;
    PyObject *now = victim_remove(c, &v);
    if (!now)
        return -1;
    long long free_ispace = v.free_ispace;
    if (nlink > 1 && v.max_inodes) { /* _drop_link */
        free_ispace += BOGO_INODE_SIZE;
        if (sa_ll(v.fs, m_free_ispace, free_ispace) < 0)
            return -1;
    }
    if (sa_ll(victim, s_nlink, nlink - 1) < 0 || attr_set(victim, s_ctime_ns, now) < 0)
        return -1;
    if (reclaim) { /* FsCore._reclaim */
        if (sa_ll(budget, s_used_pages, used - nrpages) < 0 ||
            sa_ll(private, s_used_pages, nrpages) < 0 || attr_set(mapping, s_budget, private) < 0 ||
            victim_reclaimed(c, &v, free_ispace) < 0)
            return -1;
    }
    reply_header(c, unique, 0);
    e->n_unlink++;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/*
 * RMDIR of an empty directory (NamespaceOps.rmdir): _ops["rmdir"] += 1;
 * victim_remove; _drop_link: the victim's nlink 0, the parent's nlink - 1, the
 * victim's ctime; a closed directory is reclaimed (victim_reclaimed: a directory
 * has no pages). Declined: "." (EINVAL) and ".." (ENOTEMPTY), what victim_check
 * declines, a victim that is not a plain directory (ENOTDIR) or not empty
 * (ENOTEMPTY), an eviction (no lookup and no open handle left: Python's), a
 * parent with an nlink below 1.
 */
static int do_rmdir(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                    uint64_t nodeid)
{
    Engine *e = c->e;
    victim_t v;
    const unsigned char *name = m + IN_HEADER;
    Py_ssize_t room = n - IN_HEADER;
    if (room >= 2 && name[0] == '.' && (name[1] == 0 || (room >= 3 && name[1] == '.' &&
                                                         name[2] == 0)))
        DECLINE();
    if (victim_check(c, m, n, nodeid, &v) < 0)
        DECLINE();
    PyObject *vdir, *vnames;
    long long nlookup, nopen, pnlink;
    if (plain_dir(c, v.victim, &vdir, &vnames) < 0)
        DECLINE();
    Py_ssize_t entries = PyObject_Size(vdir); /* len(victim.dir) */
    if (entries != 0 || ga_ll(v.victim, s_nlookup, &nlookup) < 0 || nlookup < 0 ||
        ga_ll(v.victim, s_nopen, &nopen) < 0 || nopen < 0 ||
        ga_ll(v.parent, s_nlink, &pnlink) < 0 || pnlink < 1)
        DECLINE();
    if (nopen == 0 && nlookup == 0)
        DECLINE(); /* _maybe_evict drops it now: Python's */
    /* ---- phase 2 ---- */
    if (count_op(c, m_rmdir_op) < 0)
        return -1;
    PyObject *now = victim_remove(c, &v);
    if (!now)
        return -1;
    if (sa_ll(v.victim, s_nlink, 0) < 0 || sa_ll(v.parent, s_nlink, pnlink - 1) < 0 ||
        attr_set(v.victim, s_ctime_ns, now) < 0)
        return -1;
    if (nopen == 0 && victim_reclaimed(c, &v, v.free_ispace) < 0)
        return -1;
    reply_header(c, unique, 0);
    e->n_rmdir++;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/* ----------------------------------------------------------------- FORGET */

#define OP_FORGET 2
#define OP_BATCH_FORGET 42
#define FORGET_IN 8        /* fuse_forget_in: nlookup */
#define BATCH_FORGET_IN 8  /* fuse_batch_forget_in: count, dummy */
#define FORGET_ONE 16      /* fuse_forget_one: nodeid, nlookup */
#define MAXFORGET 32       /* a larger batch: Python's (MAXOWN bounds the refs kept: one
                            * per entry and four more) */
#define EVICT_LATER_MAX 256 /* fsimpl.state.EVICT_LATER_MAX */

/* One forget as ShmFs.forget makes it: the inode (NULL: none, only the op count),
 * its new nlookup, and whether it goes to evict_later (_maybe_evict, later=True). */
typedef struct {
    PyObject *inode;
    long long nlookup;
    int evict;
} forget_t;

/* The checks of one forget; 0 ok, -1 declined. _maybe_evict's reclaim (the last
 * lookup of a nameless, closed, unreclaimed inode) and an eviction now (no
 * defer_evictions) are Python's, as is the root. */
static int forget_check(ctx_t *c, PyObject *inodes, uint64_t nodeid, uint64_t n, int defer,
                        forget_t *f)
{
    Engine *e = c->e;
    f->inode = NULL;
    f->evict = 0;
    if (nodeid > (uint64_t)LLONG_MAX || nodeid == ROOT_INO)
        return -1;
    PyObject *key = PyLong_FromUnsignedLongLong(nodeid);
    if (!key)
        return -1;
    PyObject *inode = PyDict_GetItemWithError(inodes, key);
    Py_DECREF(key);
    if (!inode)
        return PyErr_Occurred() ? -1 : 0;
    if ((PyObject *)Py_TYPE(inode) != e->t_inode)
        return -1;
    f->inode = keep(c, Py_NewRef(inode));
    long long nlookup, nlink, nopen;
    if (!f->inode || ga_ll(inode, s_nlookup, &nlookup) < 0 || nlookup < 0 ||
        ga_ll(inode, s_nlink, &nlink) < 0 || ga_ll(inode, s_nopen, &nopen) < 0)
        return -1;
    f->nlookup = (uint64_t)nlookup > n ? nlookup - (long long)n : 0;
    if (nlink == 0 && nopen == 0) {
        PyObject *rec = ga(c, inode, s_reclaimed);
        if (!rec || rec != Py_True)
            return -1; /* the reclaim: Python's */
        if (f->nlookup == 0) {
            if (!defer)
                return -1;
            f->evict = 1;
        }
    }
    return 0;
}

static int reap_one(Engine *e);

/* FORGET and BATCH_FORGET (ShmFs.forget per entry; no reply): nlookup lowered, an
 * inode nothing holds any more appended to fs.evict_later, reaped by the session
 * between requests as after the Python path; when that makes evict_later longer
 * than EVICT_LATER_MAX, its head is reaped at once (reap_one), as _maybe_evict
 * does. Declined: any entry forget_check declines, a batch of more than MAXFORGET
 * or with a node id twice, an excess head reap_one declines, a message of another
 * length. */
static int do_forget(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint32_t op,
                     uint64_t nodeid)
{
    Engine *e = c->e;
    forget_t f[MAXFORGET];
    uint64_t ids[MAXFORGET];
    uint32_t count = 1;
    if (op == OP_FORGET) {
        if (n != IN_HEADER + FORGET_IN)
            DECLINE();
        ids[0] = nodeid;
    } else {
        if (n < IN_HEADER + BATCH_FORGET_IN)
            DECLINE();
        count = get_u32(m + IN_HEADER);
        if (count > MAXFORGET || n != IN_HEADER + BATCH_FORGET_IN + (Py_ssize_t)count * FORGET_ONE)
            DECLINE();
    }
    PyObject *fs = e->fs;
    PyObject *inodes = ga(c, fs, s_inodes);
    PyObject *defer_o = inodes ? ga(c, fs, m_defer_evictions) : NULL;
    PyObject *later = defer_o ? ga(c, fs, m_evict_later) : NULL;
    PyObject *ops = later ? ga(c, fs, s_ops) : NULL; /* once: count_op keeps a ref a call */
    if (!ops || !PyDict_CheckExact(inodes) || !PyDict_Check(ops))
        DECLINE();
    int defer = PyObject_IsTrue(defer_o);
    if (defer < 0)
        DECLINE();
    int evicts = 0;
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *one = m + IN_HEADER + BATCH_FORGET_IN + (size_t)i * FORGET_ONE;
        uint64_t id = op == OP_FORGET ? nodeid : get_u64(one);
        uint64_t nl = op == OP_FORGET ? get_u64(m + IN_HEADER) : get_u64(one + 8);
        for (uint32_t j = 0; j < i; j++)
            if (ids[j] == id)
                DECLINE(); /* the second would see the first's change */
        ids[i] = id;
        if (forget_check(c, inodes, id, nl, defer, &f[i]) < 0)
            DECLINE();
        evicts += f[i].evict;
    }
    if (evicts) {
        Py_ssize_t len = PyObject_Size(later);
        if (len < 0)
            DECLINE();
        /* _maybe_evict appends, then reaps the excess over EVICT_LATER_MAX at once
         * from the head: reaped here first, each a whole FsCore.reap(1) (the same
         * heads: the excess is at most `evicts` <= 32, the deque holds 256). A head
         * reap_one declines (pages, stale): the request is declined with the reaps
         * before it done, and Python's forget reaps the rest, as it would have. */
        for (Py_ssize_t x = len + evicts - EVICT_LATER_MAX; x > 0; x--) {
            int rr = reap_one(e);
            if (rr < 0)
                return -1;
            if (rr == 0)
                DECLINE();
        }
    }
    /* ---- phase 2 ---- */
    for (uint32_t i = 0; i < count; i++) {
        if (incr_item(ops, m_forget_op) < 0)
            return -1;
        if (!f[i].inode)
            continue;
        if (sa_ll(f[i].inode, s_nlookup, f[i].nlookup) < 0)
            return -1;
        if (f[i].evict) {
            PyObject *r = PyObject_CallMethodOneArg(later, m_append, f[i].inode);
            if (!r)
                return -1;
            Py_DECREF(r);
        }
    }
    c->niov = 0; /* no reply */
    c->total = 0;
    e->n_forget += count;
    return 1;
decline:
    PyErr_Clear();
    return 0;
}

/* ------------------------------------------------- an evicted file's pages */

/*
 * The pages of an evicted regular file freed as Mapping.release() -> PageCache.
 * remove_range(0, None) and Mapping._free -> Arena.free -> Arena._put_back free them,
 * for the plain case: no rmap (checked by the caller), every chunk's count equal to
 * the frames it holds, the arena private (no memfd, not replaying, no stale frames,
 * nothing shared copy-on-write), the frames distinct, in use, none reserved, fewer
 * than _BATCH_DISCARD_MIN runs (one madvise per run: the batch of process_madvise
 * is Python's), the mapping's private Budget holding them, the populate-ahead
 * thread (if any) neither holding its lock nor populating an overlapping range, and
 * not the last frames in use while a reserve is held (Python's release_reserve).
 *
 * Why (docs/performance.md change 34): Python's eviction of a one-page file cost
 * ~44 us of the reader's CPU (numpy's unique and isin, the chunk walk), where an
 * empty file's costs ~1 us in C; `rm` of real files pays it once per file.
 */
#define REAP_MAX_CHUNKS 16  /* 2 buffers a chunk: the ctx holds MAXSEGS + 8 */
#define BATCH_DISCARD_MIN 16 /* vmcore.arena._BATCH_DISCARD_MIN */
#define REAP_MAX_RUNS (BATCH_DISCARD_MIN - 1) /* _put_back: fewer runs, one madvise each */

static PyObject *m_memfd, *m_stale_, *m_limit_, *m_in_use_, *m_res_lo_, *m_res_hi_,
    *m_frames_freed, *m_thread_, *m_cond_, *m_busy_, *m_pop_, *m_free_ready_, *m_addrs_,
    *m_free_runs_, *m_nfree_, *m_frames_returned, *m_punch_calls, *m_acquire, *m_release,
    *m_no_chunks, *m_no_keys;

static int reap_pages_intern(void)
{
#define MINTERN(var, text) \
    do { if (!((var) = PyUnicode_InternFromString(text))) return -1; } while (0)
    MINTERN(m_memfd, "memfd");
    MINTERN(m_stale_, "_stale");
    MINTERN(m_limit_, "_limit");
    MINTERN(m_in_use_, "_in_use");
    MINTERN(m_res_lo_, "_res_lo");
    MINTERN(m_res_hi_, "_res_hi");
    MINTERN(m_frames_freed, "frames_freed");
    MINTERN(m_thread_, "_thread");
    MINTERN(m_cond_, "_cond");
    MINTERN(m_busy_, "_busy");
    MINTERN(m_pop_, "_pop");
    MINTERN(m_free_ready_, "_free_ready");
    MINTERN(m_addrs_, "_addrs");
    MINTERN(m_free_runs_, "_free_runs");
    MINTERN(m_nfree_, "_nfree");
    MINTERN(m_frames_returned, "frames_returned");
    MINTERN(m_punch_calls, "punch_calls");
    MINTERN(m_acquire, "acquire");
    MINTERN(m_release, "release");
#undef MINTERN
    return 0;
}

/* vmcore.pagecache's shared stand-ins of an empty cache, imported once */
static int reap_pages_stand_ins(void)
{
    if (m_no_chunks)
        return 0;
    PyObject *mod = PyImport_ImportModule("vmcore.pagecache");
    if (!mod)
        return -1;
    PyObject *ch = PyObject_GetAttrString(mod, "_NO_CHUNKS");
    PyObject *ks = ch ? PyObject_GetAttrString(mod, "_NO_KEYS") : NULL;
    Py_DECREF(mod);
    if (!ks) {
        Py_XDECREF(ch);
        return -1;
    }
    m_no_chunks = ch;
    m_no_keys = ks;
    return 0;
}

/* SHMFS_REAP_PAGES=0 in the daemon's environment: files with pages reaped in Python
 * (the A/B switch of docs/performance.md change 34) */
static int reap_pages_enabled(void)
{
    static int on = -1;
    if (on < 0) {
        const char *env = getenv("SHMFS_REAP_PAGES");
        on = !(env && strcmp(env, "0") == 0);
    }
    return on;
}

typedef struct {
    PyObject *pages, *mapping, *mbudget, *arena, *keys, *frames_d, *flags_d, *count_d, *cond;
    PyObject *in_use_o, *pop_o, *addrs, *free_runs;
    long long n, used, fps, mfreed, afreed, nfree, returned, punches, free_ready, unmaps, gen;
    int nchunks, nruns, locked;
    int64_t *cfr[REAP_MAX_CHUNKS];
    uint8_t *cfl[REAP_MAX_CHUNKS];
    int64_t *f;                      /* the frames, sorted (PyMem) */
    uint8_t *in_use, *pop;           /* the arena's flags (pop: NULL without the thread) */
    long long run_s[REAP_MAX_RUNS], run_k[REAP_MAX_RUNS];
} reapp_t;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void reap_pages_done(reapp_t *r)
{
    if (r->locked) {
        PyObject *t = PyObject_CallMethodNoArgs(r->cond, m_release);
        if (!t)
            PyErr_WriteUnraisable(r->cond); /* cannot happen: we hold it */
        Py_XDECREF(t);
        r->locked = 0;
    }
    PyMem_Free(r->f);
    r->f = NULL;
}

/* The checks (nothing changed): 0 ready (r->locked: the populate thread's lock is
 * held until reap_pages_done), -1 declined (or an exception: the caller clears it). */
static int reap_pages_check(ctx_t *c, PyObject *mapping, PyObject *pages, long long nrpages,
                            reapp_t *r)
{
    Engine *e = c->e;
    memset(r, 0, sizeof *r);
    r->pages = pages;
    r->mapping = mapping;
    r->n = nrpages;
    if (reap_pages_stand_ins() < 0)
        return -1;
    r->mbudget = ga(c, mapping, s_budget);
    r->arena = r->mbudget ? ga(c, mapping, s_arena) : NULL;
    if (!r->arena || (PyObject *)Py_TYPE(r->mbudget) != e->t_budget ||
        (PyObject *)Py_TYPE(r->arena) != e->t_arena ||
        ga_ll(r->mbudget, s_used_pages, &r->used) < 0 || r->used < nrpages ||
        ga_ll(mapping, m_frames_freed, &r->mfreed) < 0 || ga_ll(mapping, m_nr_unmaps, &r->unmaps) < 0 ||
        ga_ll(pages, s_gen, &r->gen) < 0)
        return -1;
    /* the page cache: chunk key list, dicts and counts */
    r->keys = ga(c, pages, m_keys_);
    r->frames_d = r->keys ? ga(c, pages, s_frames_) : NULL;
    r->flags_d = r->frames_d ? ga(c, pages, s_flags_) : NULL;
    r->count_d = r->flags_d ? ga(c, pages, s_count_) : NULL;
    if (!r->count_d || !PyList_CheckExact(r->keys) || !PyDict_CheckExact(r->frames_d) ||
        !PyDict_CheckExact(r->flags_d) || !PyDict_CheckExact(r->count_d))
        return -1;
    Py_ssize_t nk = PyList_GET_SIZE(r->keys);
    if (nk < 1 || nk > REAP_MAX_CHUNKS || nrpages > nk * CHUNK || PyDict_GET_SIZE(r->frames_d) != nk ||
        PyDict_GET_SIZE(r->flags_d) != nk || PyDict_GET_SIZE(r->count_d) != nk)
        return -1;
    r->f = PyMem_Malloc((size_t)nrpages * sizeof(int64_t));
    if (!r->f)
        return -1;
    long long got = 0;
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *k = PyList_GET_ITEM(r->keys, i);
        PyObject *fr = PyDict_GetItemWithError(r->frames_d, k);
        PyObject *fl = fr ? PyDict_GetItemWithError(r->flags_d, k) : NULL;
        PyObject *cn = fl ? PyDict_GetItemWithError(r->count_d, k) : NULL;
        if (!cn || !PyLong_CheckExact(cn))
            return -1;
        long long cnt = PyLong_AsLongLong(cn);
        r->cfr[i] = get_buf(c, fr, CHUNK, 8, 1, NULL);
        r->cfl[i] = r->cfr[i] ? get_buf(c, fl, CHUNK, 1, 1, NULL) : NULL;
        if (!r->cfl[i])
            return -1;
        long long held = 0;
        for (int j = 0; j < CHUNK; j++) {
            int64_t x = r->cfr[i][j];
            if (x >= 0) {
                if (got + held >= nrpages)
                    return -1; /* more frames than nrpages says */
                r->f[got + held++] = x;
            }
        }
        if (held == 0 || held != cnt) /* the chunk would stay (_uncount) */
            return -1;
        got += held;
    }
    r->nchunks = (int)nk;
    if (got != nrpages)
        return -1;
    /* Arena.free: no sharing, a private arena, the frames distinct and in use */
    long long nshared, limit, afall;
    PyObject *memfd = ga(c, r->arena, m_memfd);
    PyObject *stale = memfd ? ga(c, r->arena, m_stale_) : NULL;
    PyObject *repl = stale ? ga(c, r->arena, s_replaying) : NULL;
    if (!repl || memfd != Py_None || stale != Py_None || repl != Py_False ||
        ga_ll(r->arena, s_nshared, &nshared) < 0 || nshared != 0 ||
        ga_ll(r->arena, m_limit_, &limit) < 0 || ga_ll(r->arena, s_fps, &r->fps) < 0 ||
        r->fps <= 0 || ga_ll(r->arena, m_frames_freed, &r->afreed) < 0 ||
        ga_ll(r->arena, s_frames_allocated, &afall) < 0 ||
        ga_ll(r->arena, m_nfree_, &r->nfree) < 0 ||
        ga_ll(r->arena, m_frames_returned, &r->returned) < 0 ||
        ga_ll(r->arena, m_punch_calls, &r->punches) < 0)
        return -1;
    qsort(r->f, (size_t)nrpages, sizeof(int64_t), cmp_i64);
    int64_t lo = r->f[0], hi = r->f[nrpages - 1];
    if (lo <= 0 || hi >= limit)
        return -1;
    for (long long i = 1; i < nrpages; i++)
        if (r->f[i] == r->f[i - 1])
            return -1; /* np.unique would fold them: Python's */
    Py_ssize_t ilen;
    r->in_use_o = ga(c, r->arena, m_in_use_);
    r->in_use = r->in_use_o ? get_buf(c, r->in_use_o, -1, 1, 1, &ilen) : NULL;
    if (!r->in_use || ilen < limit)
        return -1;
    for (long long i = 0; i < nrpages; i++)
        if (!r->in_use[r->f[i]])
            return -1; /* Arena.free's ValueError: Python's */
    PyObject *res = ga(c, r->arena, s_res_);
    if (!res || !PyList_CheckExact(res))
        return -1;
    if (PyList_GET_SIZE(res)) {
        long long rlo, rhi;
        if (ga_ll(r->arena, m_res_lo_, &rlo) < 0 || ga_ll(r->arena, m_res_hi_, &rhi) < 0)
            return -1;
        if (lo <= rhi && hi >= rlo) { /* np.isin(f, _res): a reserved frame is Python's */
            for (Py_ssize_t j = 0; j < PyList_GET_SIZE(res); j++) {
                long long x = PyLong_AsLongLong(PyList_GET_ITEM(res, j));
                if (x == -1 && PyErr_Occurred())
                    return -1;
                int64_t *hit = bsearch(&x, r->f, (size_t)nrpages, sizeof(int64_t), cmp_i64);
                if (hit)
                    return -1;
            }
        }
        if (afall == r->afreed + nrpages)
            return -1; /* the last frames in use: release_reserve follows (Python's) */
    }
    /* Arena._runs_sorted: runs of consecutive frames, split at segment boundaries */
    r->nruns = 0;
    for (long long i = 0; i < nrpages; i++) {
        if (i == 0 || r->f[i] != r->f[i - 1] + 1 || r->f[i] % r->fps == 0) {
            if (r->nruns == REAP_MAX_RUNS)
                return -1; /* _discard_batch (process_madvise): Python's */
            r->run_s[r->nruns] = r->f[i];
            r->run_k[r->nruns++] = 0;
        }
        r->run_k[r->nruns - 1]++;
    }
    r->addrs = ga(c, r->arena, m_addrs_);
    r->free_runs = r->addrs ? ga(c, r->arena, m_free_runs_) : NULL;
    if (!r->free_runs || !PyList_CheckExact(r->addrs) || !PyList_CheckExact(r->free_runs))
        return -1;
    long long nseg = PyList_GET_SIZE(r->addrs);
    if (hi / r->fps >= nseg)
        return -1;
    /* the populate-ahead thread: its lock taken without waiting (it needs the GIL to
     * let go of it), no range of ours being populated (_wait_not_busy's) */
    PyObject *thread = ga(c, r->arena, m_thread_);
    if (!thread)
        return -1;
    if (thread != Py_None) {
        r->cond = ga(c, r->arena, m_cond_);
        if (!r->cond)
            return -1;
        PyObject *ok = PyObject_CallMethodOneArg(r->cond, m_acquire, Py_False);
        if (!ok)
            return -1;
        r->locked = ok == Py_True;
        Py_DECREF(ok);
        if (!r->locked)
            return -1;
        PyObject *busy = ga(c, r->arena, m_busy_);
        if (!busy)
            return -1;
        if (busy != Py_None) {
            if (!PyTuple_CheckExact(busy) || PyTuple_GET_SIZE(busy) != 2)
                return -1;
            long long b0 = PyLong_AsLongLong(PyTuple_GET_ITEM(busy, 0));
            long long b1 = PyLong_AsLongLong(PyTuple_GET_ITEM(busy, 1));
            if (PyErr_Occurred() || (b0 <= hi && lo < b1))
                return -1; /* _wait_not_busy would wait: Python's */
        }
        Py_ssize_t plen;
        r->pop_o = ga(c, r->arena, m_pop_);
        r->pop = r->pop_o ? get_buf(c, r->pop_o, -1, 1, 1, &plen) : NULL;
        if (!r->pop || plen < limit || ga_ll(r->arena, m_free_ready_, &r->free_ready) < 0)
            return -1;
    }
    return 0;
}

/* Phase 2: exactly release()'s changes, in its order. -1 on failure (exception set). */
static int reap_pages_apply(ctx_t *c, reapp_t *r)
{
    (void)c;
    long long n = r->n;
    /* Mapping.unmap_mapping_range (no rmap) */
    if (sa_ll(r->mapping, m_nr_unmaps, r->unmaps + 1) < 0)
        return -1;
    /* PageCache.remove_range(0, None): every chunk emptied and dropped */
    for (int i = 0; i < r->nchunks; i++) {
        for (int j = 0; j < CHUNK; j++)
            r->cfr[i][j] = -1;
        memset(r->cfl[i], 0, CHUNK);
    }
    if (sa_ll(r->pages, s_gen, r->gen + 1) < 0 || sa_ll(r->pages, s_nrpages, 0) < 0 ||
        attr_set(r->pages, s_frames_, m_no_chunks) < 0 ||
        attr_set(r->pages, s_flags_, m_no_chunks) < 0 ||
        attr_set(r->pages, s_count_, m_no_chunks) < 0 || attr_set(r->pages, m_keys_, m_no_keys) < 0)
        return -1;
    /* Arena.free -> _put_back */
    if (sa_ll(r->arena, m_frames_freed, r->afreed + n) < 0)
        return -1;
    for (long long i = 0; i < n; i++)
        r->in_use[r->f[i]] = 0;
    if (r->pop) {
        long long was = 0;
        for (long long i = 0; i < n; i++) {
            was += r->pop[r->f[i]] != 0;
            r->pop[r->f[i]] = 0;
        }
        if (sa_ll(r->arena, m_free_ready_, r->free_ready - was) < 0)
            return -1;
    }
    if (r->locked) {
        PyObject *t = PyObject_CallMethodNoArgs(r->cond, m_release);
        if (!t)
            return -1;
        Py_DECREF(t);
        r->locked = 0;
    }
    for (int i = 0; i < r->nruns; i++) {
        long long seg = r->run_s[i] / r->fps, idx = r->run_s[i] % r->fps;
        PyObject *ao = PyList_GET_ITEM(r->addrs, seg);
        uintptr_t base = (uintptr_t)PyLong_AsUnsignedLongLong(ao);
        if (base == (uintptr_t)-1 && PyErr_Occurred())
            return -1;
        if (madvise((void *)(base + ((uintptr_t)idx << PAGE_SHIFT)),
                    (size_t)r->run_k[i] << PAGE_SHIFT, MADV_DONTNEED) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (sa_ll(r->arena, m_punch_calls, r->punches + i + 1) < 0)
            return -1;
    }
    for (int i = 0; i < r->nruns; i++) {
        PyObject *run = Py_BuildValue("(LL)", r->run_s[i], r->run_k[i]);
        if (!run)
            return -1;
        int a = PyList_Append(r->free_runs, run);
        Py_DECREF(run);
        if (a < 0)
            return -1;
    }
    if (sa_ll(r->arena, m_nfree_, r->nfree + n) < 0 ||
        sa_ll(r->arena, m_frames_returned, r->returned + n) < 0)
        return -1;
    /* Mapping._free: the private Budget's uncharge, the mapping's counter */
    if (sa_ll(r->mbudget, s_used_pages, r->used - n) < 0 ||
        sa_ll(r->mapping, m_frames_freed, r->mfreed + n) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------- CREATE's objects without __init__ */

/*
 * A regular file's Inode, its Mapping and PageCache, and the Handle, made as their
 * Python constructors make them (Inode.__init__ of an S_IFREG mode, Backing.
 * new_mapping -> Mapping(arena, budget) -> PageCache(), Handle(ino, flags, False))
 * but by filling their __slots__ from C: the four calls into Python code were ~3 of
 * CREATE's ~5.3 us of engine CPU (docs/performance.md change 34).
 *
 * Guarded, per type, once: the class's own __slots__ are exactly the names listed
 * here (in that order), its base is object, it has no __dict__ and object's __new__;
 * otherwise (a field added, a subclass) CREATE calls the constructors as before. The
 * values each constructor gives its fields are held to Python's by
 * tests/server/test_hotpath_twin.py (every slot of the objects a CREATE made in C
 * against those of the Python path's).
 */
enum { FN_INODE, FN_MAPPING, FN_PAGES, FN_HANDLE, FN_TYPES };
static const char *const fn_inode_slots[] = {
    "acl_access", "acl_default", "atime_ns", "btime_ns", "ctime_ns", "dir", "fsflags", "gid",
    "ino", "linkable", "mapping", "mode", "mtime_ns", "nlink", "nlookup", "nopen", "parent",
    "rdev", "reclaimed", "symlink_pages", "target", "uid", "window_blocks", "xattr_space",
    "xattrs", NULL};
static const char *const fn_mapping_slots[] = {
    "_fstats", "arena", "budget", "can_nonlinear", "frames_freed", "nr_punches",
    "nr_truncates", "nr_unmaps", "page_mkwrite", "pages", "rmap", "size", "write_notify",
    NULL};
static const char *const fn_pages_slots[] = {"_count", "_flags", "_frames", "_keys", "gen",
                                             "nrpages", NULL};
static const char *const fn_handle_slots[] = {"ino", "flags", "is_dir", "dir_end", NULL};
static const char *const *const fn_slots[FN_TYPES] = {fn_inode_slots, fn_mapping_slots,
                                                      fn_pages_slots, fn_handle_slots};
#define FN_MAXSLOTS 25
static PyObject *fn_names[FN_TYPES][FN_MAXSLOTS];
static int fn_nslots[FN_TYPES];
static PyTypeObject *fn_checked[FN_TYPES]; /* the type last checked, and its verdict */
static int fn_ok[FN_TYPES];
static PyObject *fn_backing_t, *fn_new_mapping; /* fsimpl.backing.Backing, its method */
static int fast_new_on = 1; /* SHMFS_FAST_NEW=0: the constructors (A/B, twin tests) */

/* Whether tp may be made here (see above); the names interned on the way. */
static int fn_type_ok(int which, PyTypeObject *tp)
{
    if (fn_checked[which] == tp)
        return fn_ok[which];
    int ok = 0;
    if (!fn_nslots[which]) {
        int n = 0;
        for (const char *const *s = fn_slots[which]; *s; s++, n++)
            if (!(fn_names[which][n] = PyUnicode_InternFromString(*s)))
                goto out;
        fn_nslots[which] = n;
    }
    if (tp->tp_base != &PyBaseObject_Type || tp->tp_new != PyBaseObject_Type.tp_new ||
        tp->tp_dictoffset != 0 || !tp->tp_alloc)
        goto out;
    PyObject *slots = PyDict_GetItemString(tp->tp_dict, "__slots__"); /* borrowed */
    if (!slots || !PyTuple_CheckExact(slots) || PyTuple_GET_SIZE(slots) != fn_nslots[which])
        goto out;
    for (int i = 0; i < fn_nslots[which]; i++) {
        PyObject *s = PyTuple_GET_ITEM(slots, i);
        if (!PyUnicode_Check(s) || PyUnicode_Compare(s, fn_names[which][i]) != 0)
            goto out;
        PyObject *d = _PyType_Lookup(tp, fn_names[which][i]);
        if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type))
            goto out;
    }
    ok = 1;
out:
    PyErr_Clear();
    Py_XSETREF(fn_checked[which], (PyTypeObject *)Py_NewRef(tp));
    fn_ok[which] = ok;
    return ok;
}

/* A new instance of tp with its slots set to vals (new reference), or NULL */
static PyObject *fn_make(int which, PyTypeObject *tp, PyObject *const *vals)
{
    PyObject *o = tp->tp_alloc(tp, 0);
    if (!o)
        return NULL;
    for (int i = 0; i < fn_nslots[which]; i++) {
        if (attr_set(o, fn_names[which][i], vals[i]) < 0) {
            Py_DECREF(o);
            return NULL;
        }
    }
    return o;
}

/* May CREATE make its objects here? The four types checked, the backing's plain */
static int fn_create_ok(Engine *e, PyObject *backing)
{
    if (!fast_new_on)
        return 0;
    if (!fn_backing_t) {
        const char *env = getenv("SHMFS_FAST_NEW");
        if (env && strcmp(env, "0") == 0) {
            fast_new_on = 0;
            return 0;
        }
        PyObject *mod = PyImport_ImportModule("fsimpl.backing");
        PyObject *bt = mod ? PyObject_GetAttrString(mod, "Backing") : NULL;
        Py_XDECREF(mod);
        if (!bt || !PyType_Check(bt)) {
            Py_XDECREF(bt);
            PyErr_Clear();
            fast_new_on = 0;
            return 0;
        }
        fn_backing_t = bt;
        fn_new_mapping = _PyType_Lookup((PyTypeObject *)bt, m_new_mapping);
        Py_XINCREF(fn_new_mapping);
        if (reap_pages_stand_ins() < 0) { /* _NO_CHUNKS, _NO_KEYS */
            PyErr_Clear();
            fast_new_on = 0;
            return 0;
        }
    }
    return (PyObject *)Py_TYPE(backing) == fn_backing_t &&
           _PyType_Lookup(Py_TYPE(backing), m_new_mapping) == fn_new_mapping &&
           fn_new_mapping != NULL &&
           fn_type_ok(FN_INODE, (PyTypeObject *)e->t_inode) &&
           fn_type_ok(FN_MAPPING, (PyTypeObject *)e->t_mapping) &&
           fn_type_ok(FN_PAGES, (PyTypeObject *)e->t_pages) &&
           fn_type_ok(FN_HANDLE, (PyTypeObject *)e->t_handle);
}

/* Inode(ino, mode, uid, gid, now) of a regular file: Inode.__init__'s values */
static PyObject *fn_inode(ctx_t *c, PyObject *ino, PyObject *mode, PyObject *uid,
                          PyObject *gid, PyObject *now)
{
    PyObject *zero = keep(c, PyLong_FromLong(0));
    PyObject *xattrs = zero ? keep(c, PyDict_New()) : NULL;
    if (!xattrs)
        return NULL;
    PyObject *vals[] = {Py_None, Py_None, now, now, now, Py_None, zero, gid, ino, Py_False,
                        Py_None, mode, now, zero, zero, zero, zero, zero, Py_False, zero,
                        Py_None, uid, Py_None, zero, xattrs};
    return keep(c, fn_make(FN_INODE, (PyTypeObject *)c->e->t_inode, vals));
}

/* Backing.new_mapping(): Mapping(arena, budget) with its PageCache() */
static PyObject *fn_mapping(ctx_t *c, PyObject *backing)
{
    PyObject *arena = ga(c, backing, s_arena);
    PyObject *budget = arena ? ga(c, backing, s_budget) : NULL;
    PyObject *zero = budget ? keep(c, PyLong_FromLong(0)) : NULL;
    if (!zero)
        return NULL;
    PyObject *pvals[] = {m_no_chunks, m_no_chunks, m_no_chunks, m_no_keys, zero, zero};
    PyObject *pages = keep(c, fn_make(FN_PAGES, (PyTypeObject *)c->e->t_pages, pvals));
    if (!pages)
        return NULL;
    PyObject *mvals[] = {Py_None, arena, budget, Py_True, zero, zero, zero, zero, Py_None,
                         pages, Py_None, zero, Py_False};
    return keep(c, fn_make(FN_MAPPING, (PyTypeObject *)c->e->t_mapping, mvals));
}

/* Handle(ino, flags, False) */
static PyObject *fn_handle(ctx_t *c, PyObject *ino, PyObject *flags)
{
    PyObject *zero = keep(c, PyLong_FromLong(0));
    if (!zero)
        return NULL;
    PyObject *vals[] = {ino, flags, Py_False, zero};
    return keep(c, fn_make(FN_HANDLE, (PyTypeObject *)c->e->t_handle, vals));
}

/* ------------------------------------------------------------------ REAP */

/*
 * One eviction FORGET left for later (FsCore.reap(1) -> _drop -> _evict), for the
 * case an unlink of an empty, closed regular file leaves: the head of
 * fs.evict_later is an Inode still in fs._inodes, evictable (nlink, nlookup and
 * nopen 0), already reclaimed (its space went back at UNLINK), no window file nor
 * a window's object, no long-symlink pages, its Mapping holding no page and no
 * rmap (Mapping.release then only counts an unmap and bumps the PageCache's gen:
 * remove_range of nothing), its xattrs a plain dict. Then, as _evict and _drop do:
 * linkable False, nr_unmaps + 1, pages.gen + 1, symlink_pages 0, xattr_space 0,
 * xattrs cleared, both ACLs None, the popleft, del fs._inodes[ino], _evicted + 1.
 * No event: _evict queues one only through WindowTable.release, for a window.
 *
 * Why (docs/performance.md change 32): each unlink leaves one such eviction, and
 * the C loop returned to Python for it at the next empty read: ~3 us of Python
 * (reap) plus the loop's exit and re-entry, on the path of the client's next
 * request whenever it arrives meanwhile.
 *
 * Returns 1 reaped, 0 declined (nothing changed: Python's reap does it, or skips
 * an entry that is no longer evictable), -1 failed after a change (exception set).
 */
static ctx_t *ctx_take(Engine *e);
static void ctx_give(Engine *e, ctx_t *c);

static int reap_one(Engine *e)
{
    ctx_t *c = ctx_take(e);
    if (!c)
        return 0;
    int rc = 0;
    reapp_t rp;
    rp.f = NULL;
    rp.locked = 0;
    PyObject *fs = e->fs;
    PyObject *later = ga(c, fs, m_evict_later);
    PyObject *inodes = later ? ga(c, fs, s_inodes) : NULL;
    if (!inodes || !PyDict_CheckExact(inodes) || PyObject_Size(later) <= 0)
        goto out;
    PyObject *inode = keep(c, PySequence_GetItem(later, 0));
    if (!inode || (PyObject *)Py_TYPE(inode) != e->t_inode)
        goto out;
    long long ino, nlink, nlookup, nopen, spages, evicted, nr_unmaps, gen, nrpages;
    if (ga_ll(inode, s_ino, &ino) < 0 || ino == ROOT_INO || ino < 0 ||
        ga_ll(inode, s_nlink, &nlink) < 0 || nlink != 0 ||
        ga_ll(inode, s_nlookup, &nlookup) < 0 || nlookup != 0 ||
        ga_ll(inode, s_nopen, &nopen) < 0 || nopen != 0 ||
        ga_ll(inode, s_symlink_pages, &spages) < 0 || spages != 0 ||
        ga_ll(fs, m_evicted_n, &evicted) < 0)
        goto out;
    PyObject *rec = ga(c, inode, s_reclaimed);
    PyObject *key = rec ? keep(c, PyLong_FromLongLong(ino)) : NULL;
    if (!key || rec != Py_True)
        goto out;
    PyObject *cur = PyDict_GetItemWithError(inodes, key);
    if (cur != inode || window_file(c, (uint64_t)ino) != 0)
        goto out;
    PyObject *xattrs = ga(c, inode, m_xattrs);
    PyObject *mapping = xattrs ? ga(c, inode, s_mapping) : NULL;
    if (!mapping || !PyDict_CheckExact(xattrs) ||
        (PyObject *)Py_TYPE(mapping) != e->t_mapping)
        goto out;
    PyObject *rmap = ga(c, mapping, m_rmap);
    PyObject *pages = rmap ? ga(c, mapping, s_pages) : NULL;
    PyObject *keys = pages && (PyObject *)Py_TYPE(pages) == e->t_pages ?
        ga(c, pages, m_keys_) : NULL;
    if (!keys || rmap != Py_None || !(PyList_CheckExact(keys) || PyTuple_CheckExact(keys)) ||
        ga_ll(pages, s_nrpages, &nrpages) < 0 || nrpages < 0 ||
        ga_ll(pages, s_gen, &gen) < 0 || ga_ll(mapping, m_nr_unmaps, &nr_unmaps) < 0)
        goto out;
    if (nrpages == 0 && PySequence_Fast_GET_SIZE(keys) != 0)
        goto out; /* an emptied chunk that stayed: Python's */
    /* a file with pages: Mapping.release's frees, checked (reap_pages_check) */
    if (nrpages > 0 && (!reap_pages_enabled() || reap_pages_check(c, mapping, pages, nrpages, &rp) < 0))
        goto out;
    /* ---- phase 2 ---- */
    rc = -1;
    PyObject *head = PyObject_CallMethodNoArgs(later, m_popleft);
    if (!head)
        goto out;
    Py_DECREF(head);
    if (attr_set(inode, m_linkable, Py_False) < 0)
        goto out;
    if (nrpages > 0) {
        if (reap_pages_apply(c, &rp) < 0)
            goto out;
        e->n_reap_pages += (unsigned long long)nrpages;
    } else if (sa_ll(mapping, m_nr_unmaps, nr_unmaps + 1) < 0 || sa_ll(pages, s_gen, gen + 1) < 0) {
        goto out;
    }
    if (sa_ll(inode, s_symlink_pages, 0) < 0 || sa_ll(inode, m_xattr_space, 0) < 0)
        goto out;
    PyDict_Clear(xattrs);
    if (attr_set(inode, m_acl_access, Py_None) < 0 || attr_set(inode, m_acl_default, Py_None) < 0 ||
        PyDict_DelItem(inodes, key) < 0 || sa_ll(fs, m_evicted_n, evicted + 1) < 0)
        goto out;
    e->n_reap++;
    rc = 1;
out:
    if (rc == 0)
        PyErr_Clear();
    reap_pages_done(&rp); /* the populate thread's lock, the frame list */
    ctx_give(e, c);
    return rc;
}

/* Engine.reap() -> 1 reaped, 0 declined (reap_one; for the tests and the C loop) */
static PyObject *Engine_reap(Engine *e, PyObject *noargs)
{
    (void)noargs;
    int r = reap_one(e);
    return r < 0 ? NULL : PyLong_FromLong(r);
}
