/*
 * CREATE and UNLINK of regular files, FORGET and BATCH_FORGET, in the hot path (part of
 * mount.server._hotpath).
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

static PyObject *m_next_ino, *m_max_inodes, *m_free_ispace, *m_backing, *m_new_mapping,
    *m_by_cookie_, *m_cookies_, *m_dead_, *m_next_cookie_, *m_acl_default, *m_create_op,
    *m_unlink_op, *m_budget_fs, *m_reclaimed_n, *m_xattr_space, *m_defer_evictions,
    *m_evict_later, *m_forget_op, *m_append;

#define BOGO_INODE_SIZE 1024
#define CREATE_IN 16 /* fuse_create_in: flags, mode, umask, open_flags */
#define CREATE_OUT (ENTRY_OUT + OPEN_OUT)
#define S_ISVTX_ 01000

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
#undef MINTERN
    return 0;
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

/* ----------------------------------------------------------------- CREATE */

/*
 * CREATE of a new regular file (Operations.handle_fast -> FileOps.create, then
 * _create_reply): _ops["create"] += 1; FsCore._alloc_inode's ispace reservation,
 * inode number, Inode(ino, mode, uid, gid, now) with a Mapping from
 * fs._backing.new_mapping(), entered in fs._inodes; _link_child's Directory.add
 * (cookie), nlink 1, the parent's mtime and ctime (a second clock reading);
 * _new_handle's Handle and nopen; _entry's nlookup; the reply's FOPEN flags as
 * OPEN computes them (open_keeps_cache). The mode is S_IFREG | mode & 07777 less
 * the umask's permission bits (acl.inherit without a default ACL).
 *
 * Declined: an existing name (O_EXCL's EEXIST, or the open of the existing file),
 * names the codec or _check_name refuse ('/' inside, "." and "..", > 255 bytes, no
 * NUL), O_APPEND (-o writeback_cache strips it: _handle_flags), a parent that is
 * not a plain directory, removed (nlink 0), with chattr flags, set-gid (the gid and
 * mode rules of _new_child) or a default ACL; nr_inodes exhausted (ENOSPC); an
 * inode number or fh already in its table; a message of another length.
 * The request's open_flags are ignored, as FileOps.create ignores them.
 */
static int do_create(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                     uint64_t nodeid)
{
    Engine *e = c->e;
    if (n <= IN_HEADER + CREATE_IN)
        DECLINE();
    uint32_t flags = get_u32(m + IN_HEADER), mode_in = get_u32(m + IN_HEADER + 4);
    uint32_t umask = get_u32(m + IN_HEADER + 8);
    uint32_t uid = get_u32(m + 24), gid = get_u32(m + 28);
    const unsigned char *name = m + IN_HEADER + CREATE_IN;
    Py_ssize_t len = plain_name_len(name, n - IN_HEADER - CREATE_IN);
    if (len < 0 || memchr(name, '/', (size_t)len))
        DECLINE();
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        DECLINE();
    if (flags & O_APPEND_)
        DECLINE();
    PyObject *fs = e->fs;
    PyObject *inodes = ga(c, fs, s_inodes);
    PyObject *handles = inodes ? ga(c, fs, s_handles) : NULL;
    if (!handles || !PyDict_CheckExact(inodes) || !PyDict_CheckExact(handles))
        DECLINE();
    PyObject *parent = inode_of(c, inodes, nodeid), *dir, *names;
    if (!parent || plain_dir(c, parent, &dir, &names) < 0)
        DECLINE();
    PyObject *key = keep(c, PyBytes_FromStringAndSize((const char *)name, len));
    if (!key)
        DECLINE();
    int has = PyDict_Contains(names, key);
    if (has != 0)
        DECLINE();
    long long pnlink, pmode, pfsflags, max_inodes, free_ispace = 0, next_ino, next_fh;
    if (ga_ll(parent, s_nlink, &pnlink) < 0 || pnlink == 0 ||
        ga_ll(parent, s_mode, &pmode) < 0 || (pmode & S_ISGID_) ||
        ga_ll(parent, s_fsflags, &pfsflags) < 0 || pfsflags != 0)
        DECLINE();
    PyObject *acl = ga(c, parent, m_acl_default);
    if (!acl || acl != Py_None)
        DECLINE();
    if (ga_ll(fs, m_max_inodes, &max_inodes) < 0 ||
        (max_inodes && (ga_ll(fs, m_free_ispace, &free_ispace) < 0 ||
                        free_ispace < BOGO_INODE_SIZE)))
        DECLINE();
    if (ga_ll(fs, m_next_ino, &next_ino) < 0 || next_ino < 0 || next_ino == LLONG_MAX ||
        ga_ll(fs, s_next_fh, &next_fh) < 0 || next_fh < 0 || next_fh == LLONG_MAX)
        DECLINE();
    PyObject *ino_o = keep(c, PyLong_FromLongLong(next_ino));
    PyObject *fh_o = ino_o ? keep(c, PyLong_FromLongLong(next_fh)) : NULL;
    if (!fh_o || PyDict_Contains(inodes, ino_o) != 0 || PyDict_Contains(handles, fh_o) != 0)
        DECLINE();
    /* the directory's cookie state (Directory.add), read before any change */
    PyObject *by_cookie = ga(c, dir, m_by_cookie_), *cookies = by_cookie ? ga(c, dir, m_cookies_) : NULL;
    long long cookie;
    if (!cookies || !PyDict_CheckExact(by_cookie) || !PyList_CheckExact(cookies) ||
        ga_ll(dir, m_next_cookie_, &cookie) < 0 || cookie == LLONG_MAX)
        DECLINE();
    PyObject *backing = ga(c, fs, m_backing);
    if (!backing)
        DECLINE();
    long long mode = S_IFREG_ | (mode_in & 07777);
    mode &= ~(long long)(umask & 0777);
    PyObject *mode_o = keep(c, PyLong_FromLongLong(mode));
    PyObject *uid_o = mode_o ? keep(c, PyLong_FromUnsignedLong(uid)) : NULL;
    PyObject *gid_o = uid_o ? keep(c, PyLong_FromUnsignedLong(gid)) : NULL;
    PyObject *fl_o = gid_o ? keep(c, PyLong_FromUnsignedLong(flags)) : NULL;
    PyObject *cookie_o = fl_o ? keep(c, PyLong_FromLongLong(cookie)) : NULL;
    PyObject *ent = cookie_o ? keep(c, PyTuple_Pack(2, cookie_o, ino_o)) : NULL;
    if (!ent)
        DECLINE();
    /* ---- the objects, made before any change (no side effect but the clock) ---- */
    PyObject *now = now_ns(c); /* _alloc_inode's Inode(..., self._now()) */
    if (!now)
        return -1;
    PyObject *iargs[5] = {ino_o, mode_o, uid_o, gid_o, now};
    PyObject *child = keep(c, PyObject_Vectorcall(e->t_inode, iargs, 5, NULL));
    if (!child)
        return -1;
    PyObject *mapping = keep(c, PyObject_CallMethodNoArgs(backing, m_new_mapping));
    if (!mapping)
        return -1;
    PyObject *hargs[3] = {ino_o, fl_o, Py_False};
    PyObject *h = keep(c, PyObject_Vectorcall(e->t_handle, hargs, 3, NULL));
    if (!h)
        return -1;
    /* ---- phase 2 ---- */
    if (count_op(c, m_create_op) < 0)
        return -1;
    if (max_inodes && sa_ll(fs, m_free_ispace, free_ispace - BOGO_INODE_SIZE) < 0)
        return -1;
    if (sa_ll(fs, m_next_ino, next_ino + 1) < 0 || attr_set(child, s_mapping, mapping) < 0 ||
        PyDict_SetItem(inodes, ino_o, child) < 0)
        return -1;
    /* Directory.add: _next_cookie += 1, _names[name] = (cookie, ino), _by_cookie, _cookies */
    if (sa_ll(dir, m_next_cookie_, cookie + 1) < 0 || PyDict_SetItem(names, key, ent) < 0 ||
        PyDict_SetItem(by_cookie, cookie_o, key) < 0 || PyList_Append(cookies, cookie_o) < 0)
        return -1;
    if (sa_ll(child, s_nlink, 1) < 0)
        return -1;
    PyObject *now2 = now_ns(c); /* _link_child: parent.mtime_ns = parent.ctime_ns = now */
    if (!now2 || attr_set(parent, s_mtime_ns, now2) < 0 || attr_set(parent, s_ctime_ns, now2) < 0)
        return -1;
    if (sa_ll(fs, s_next_fh, next_fh + 1) < 0 || PyDict_SetItem(handles, fh_o, h) < 0 ||
        sa_ll(child, s_nopen, 1) < 0 || sa_ll(child, s_nlookup, 1) < 0)
        return -1;
    long long t = PyLong_AsLongLong(now);
    if (t == -1 && PyErr_Occurred())
        return -1;
    uint32_t oflags;
    if (open_keeps_cache(c, t, t, t, &oflags) < 0)
        return -1;
    unsigned char *o = c->hdr + OUT_HEADER;
    if (attr_of(c, child, o + 40) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "hotpath: the new inode has no plain attr");
        return -1;
    }
    put_u64(o, (uint64_t)next_ino);
    put_u64(o + 8, e->generation);
    put_u64(o + 16, (uint64_t)e->entry_sec);
    put_u64(o + 24, (uint64_t)e->attr_sec);
    put_u32(o + 32, (uint32_t)e->entry_nsec);
    put_u32(o + 36, (uint32_t)e->attr_nsec);
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

/* ----------------------------------------------------------------- UNLINK */

/*
 * UNLINK of a regular file's name (NamespaceOps.unlink): _ops["unlink"] += 1;
 * Directory.remove (its tombstone count and the lazy compaction of _cookies);
 * the parent's mtime and ctime and the victim's ctime (one clock reading);
 * _drop_link: a name of a file with other links gives its ispace slot back, nlink
 * -= 1; the last name of a closed file is reclaimed (FsCore._reclaim: its pages
 * uncharged from size=, its mapping moved to a private Budget, its ispace and
 * xattr space given back, fs._reclaimed += 1).
 *
 * Declined: a missing name (ENOENT), a victim that is not a plain regular file
 * (directories' EISDIR, symlinks, device nodes), chattr flags on the directory or
 * the victim (EPERM), a window file or a window's object, an eviction (the kernel
 * holds no lookup of the victim: Python frees it), a victim already reclaimed or
 * whose mapping is not charged to the mount's Budget, long-symlink pages, a
 * parent that is not a plain directory, a message the codec would refuse.
 */
static int do_unlink(ctx_t *c, const unsigned char *m, Py_ssize_t n, uint64_t unique,
                     uint64_t nodeid)
{
    Engine *e = c->e;
    const unsigned char *name = m + IN_HEADER;
    Py_ssize_t len = plain_name_len(name, n - IN_HEADER);
    if (len < 0)
        DECLINE();
    PyObject *fs = e->fs;
    PyObject *inodes = ga(c, fs, s_inodes);
    if (!inodes || !PyDict_CheckExact(inodes))
        DECLINE();
    PyObject *parent = inode_of(c, inodes, nodeid), *dir, *names;
    if (!parent || plain_dir(c, parent, &dir, &names) < 0)
        DECLINE();
    PyObject *key = keep(c, PyBytes_FromStringAndSize((const char *)name, len));
    if (!key)
        DECLINE();
    PyObject *ent = PyDict_GetItemWithError(names, key); /* (cookie, ino) */
    if (!ent || !PyTuple_CheckExact(ent) || PyTuple_GET_SIZE(ent) != 2)
        DECLINE();
    ent = keep(c, Py_NewRef(ent));
    PyObject *cookie_o = PyTuple_GET_ITEM(ent, 0), *ino_o = PyTuple_GET_ITEM(ent, 1);
    long long vino = PyLong_AsLongLong(ino_o);
    if (vino == -1 && PyErr_Occurred())
        DECLINE();
    PyObject *victim = PyDict_GetItemWithError(inodes, ino_o);
    if (!victim || (PyObject *)Py_TYPE(victim) != e->t_inode || vino == ROOT_INO)
        DECLINE();
    victim = keep(c, Py_NewRef(victim));
    long long pfsflags, vmode, vfsflags, nlink, nlookup, nopen, spages, xspace;
    if (ga_ll(parent, s_fsflags, &pfsflags) < 0 || pfsflags != 0 ||
        ga_ll(victim, s_mode, &vmode) < 0 || (vmode & S_IFMT_) != S_IFREG_ ||
        ga_ll(victim, s_fsflags, &vfsflags) < 0 || vfsflags != 0 ||
        ga_ll(victim, s_nlink, &nlink) < 0 || nlink < 1 ||
        ga_ll(victim, s_nlookup, &nlookup) < 0 || nlookup < 0 ||
        ga_ll(victim, s_nopen, &nopen) < 0 || nopen < 0 ||
        ga_ll(victim, s_symlink_pages, &spages) < 0 || spages != 0 ||
        ga_ll(victim, m_xattr_space, &xspace) < 0 || xspace < 0)
        DECLINE();
    PyObject *rec = ga(c, victim, s_reclaimed);
    if (!rec || rec != Py_False)
        DECLINE();
    if (window_file(c, (uint64_t)vino) != 0)
        DECLINE();
    int reclaim = nlink == 1 && nopen == 0;
    if (nlink == 1 && nopen == 0 && nlookup == 0)
        DECLINE(); /* _maybe_evict drops it now: Python's */
    long long max_inodes, free_ispace = 0;
    if (ga_ll(fs, m_max_inodes, &max_inodes) < 0 ||
        (max_inodes && ga_ll(fs, m_free_ispace, &free_ispace) < 0))
        DECLINE();
    /* the reclaim's objects: the mount's Budget must be the mapping's */
    PyObject *budget = NULL, *mapping = NULL, *pages = NULL, *private = NULL;
    long long nrpages = 0, used = 0, reclaimed_n = 0;
    if (reclaim) {
        budget = ga(c, fs, m_budget_fs);
        mapping = budget ? ga(c, victim, s_mapping) : NULL;
        if (!mapping || (PyObject *)Py_TYPE(mapping) != e->t_mapping ||
            (PyObject *)Py_TYPE(budget) != e->t_budget)
            DECLINE();
        PyObject *mb = ga(c, mapping, s_budget);
        pages = mb ? ga(c, mapping, s_pages) : NULL;
        if (!pages || mb != budget || (PyObject *)Py_TYPE(pages) != e->t_pages ||
            ga_ll(pages, s_nrpages, &nrpages) < 0 || ga_ll(budget, s_used_pages, &used) < 0 ||
            nrpages < 0 || nrpages > used || ga_ll(fs, m_reclaimed_n, &reclaimed_n) < 0)
            DECLINE(); /* Budget.uncharge's ValueError: Python's */
        PyObject *zero = keep(c, PyLong_FromLong(0));
        private = zero ? keep(c, PyObject_Vectorcall(e->t_budget, &zero, 1, NULL)) : NULL;
        if (!private)
            DECLINE();
    }
    /* Directory.remove's state */
    PyObject *by_cookie = ga(c, dir, m_by_cookie_), *cookies = by_cookie ? ga(c, dir, m_cookies_) : NULL;
    long long dead;
    if (!cookies || !PyDict_CheckExact(by_cookie) || !PyList_CheckExact(cookies) ||
        ga_ll(dir, m_dead_, &dead) < 0 || dead == LLONG_MAX)
        DECLINE();
    int has = PyDict_Contains(by_cookie, cookie_o);
    if (has != 1)
        DECLINE(); /* Directory.remove's KeyError: Python's */
    /* ---- phase 2 ---- */
    if (count_op(c, m_unlink_op) < 0)
        return -1;
    if (PyDict_DelItem(names, key) < 0 || PyDict_DelItem(by_cookie, cookie_o) < 0)
        return -1;
    dead += 1;
    if (dead > 32 && dead > PyDict_GET_SIZE(names)) { /* compaction of the tombstones */
        Py_ssize_t nc = PyList_GET_SIZE(cookies);
        PyObject *live = keep(c, PyList_New(0));
        if (!live)
            return -1;
        for (Py_ssize_t i = 0; i < nc; i++) {
            PyObject *ck = PyList_GET_ITEM(cookies, i);
            int in = PyDict_Contains(by_cookie, ck);
            if (in < 0 || (in && PyList_Append(live, ck) < 0))
                return -1;
        }
        if (attr_set(dir, m_cookies_, live) < 0)
            return -1;
        dead = 0;
    }
    if (sa_ll(dir, m_dead_, dead) < 0)
        return -1;
    PyObject *now = now_ns(c);
    if (!now || attr_set(parent, s_mtime_ns, now) < 0 || attr_set(parent, s_ctime_ns, now) < 0)
        return -1;
    /* _drop_link */
    if (nlink > 1 && max_inodes) {
        free_ispace += BOGO_INODE_SIZE;
        if (sa_ll(fs, m_free_ispace, free_ispace) < 0)
            return -1;
    }
    if (sa_ll(victim, s_nlink, nlink - 1) < 0 || attr_set(victim, s_ctime_ns, now) < 0)
        return -1;
    if (reclaim) { /* FsCore._reclaim */
        if (attr_set(victim, s_reclaimed, Py_True) < 0 ||
            sa_ll(budget, s_used_pages, used - nrpages) < 0 ||
            sa_ll(private, s_used_pages, nrpages) < 0 || attr_set(mapping, s_budget, private) < 0)
            return -1;
        if (max_inodes && sa_ll(fs, m_free_ispace, free_ispace + BOGO_INODE_SIZE + xspace) < 0)
            return -1;
        if (sa_ll(fs, m_reclaimed_n, reclaimed_n + 1) < 0)
            return -1;
    }
    reply_header(c, unique, 0);
    e->n_unlink++;
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
#define MAXFORGET 32       /* a larger batch: Python's (and MAXOWN bounds the refs) */
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

/* FORGET and BATCH_FORGET (ShmFs.forget per entry; no reply): nlookup lowered, an
 * inode nothing holds any more appended to fs.evict_later, reaped by the session
 * between requests as after the Python path. Declined: any entry forget_check
 * declines, a batch of more than MAXFORGET or with a node id twice, evict_later
 * so long that Python would reap at once, a message of another length. */
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
    if (!later || !PyDict_CheckExact(inodes))
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
        if (len < 0 || len + evicts > EVICT_LATER_MAX)
            DECLINE(); /* _maybe_evict reaps at once: Python's */
    }
    /* ---- phase 2 ---- */
    for (uint32_t i = 0; i < count; i++) {
        if (count_op(c, m_forget_op) < 0)
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
