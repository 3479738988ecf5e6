/*
 * bench helper: the inner loops of scripts/bench.py in C, so that the cost of
 * the interpreter does not hide the cost of the filesystem in per-operation
 * workloads (a Python os.pread costs ~0.3 us; a tmpfs 4 KiB pread ~1 us).
 *
 * Compiled at run time by scripts/benchlib/engine.py with `gcc -O2`.
 * Every subcommand prints one line: "ns=<elapsed> ops=<n> bytes=<b>" where
 * elapsed covers only the timed part (setup such as opening and buffer
 * allocation is outside it). Errors print to stderr and exit 1.
 *
 *   seqwrite  PATH TOTAL BS            O_TRUNC, pwrite BS blocks, fsync, close
 *   seqread   PATH BS                  two passes over the same fd: cold, warm
 *                                      (prints two result lines)
 *   randread  PATH OPS SEED            distinct 4 KiB pages, FADV_RANDOM; when OPS
 *                                      exceeds the file's pages, rounds separated by
 *                                      an untimed FADV_DONTNEED (cold every round)
 *   randwrite PATH OPS SEED            4 KiB pwrite at random pages, then fsync
 *   mmaptouch PATH                     MAP_SHARED PROT_READ, read one byte per page
 *   create    DIR N                    open(O_CREAT|O_EXCL|O_WRONLY) + close
 *   stat      DIR N                    stat(2) of each name
 *   unlink    DIR N                    unlink(2) of each name
 *   readdir   DIR                      opendir + readdir to the end
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096L

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "helper: %s %s: %s\n", what, path ? path : "", strerror(errno));
	exit(1);
}

static void report(long long ns, long long ops, long long bytes)
{
	printf("ns=%lld ops=%lld bytes=%lld\n", ns, ops, bytes);
}

/* xorshift64*: a fast, seedable generator so both targets see the same offsets */
static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static char *page_buffer(long bs, int fill)
{
	char *buf;
	if (posix_memalign((void **)&buf, PAGE, bs))
		die("posix_memalign", NULL);
	for (long i = 0; i < bs; i++)
		buf[i] = fill ? (char)(rnd() | 1) : 0;  /* never a zero page */
	return buf;
}

static int seqwrite(const char *path, long long total, long bs)
{
	char *buf = page_buffer(bs, 1);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open", path);
	long long t0 = now_ns(), off;
	for (off = 0; off < total; off += bs)
		if (pwrite(fd, buf, bs, off) != bs)
			die("pwrite", path);
	if (fsync(fd))
		die("fsync", path);
	if (close(fd))
		die("close", path);
	report(now_ns() - t0, total / bs, off);
	return 0;
}

static int seqread(const char *path, long bs)
{
	char *buf = page_buffer(bs, 0);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open", path);
	for (int pass = 0; pass < 2; pass++) {
		long long t0 = now_ns(), off = 0, ops = 0;
		ssize_t n;
		while ((n = pread(fd, buf, bs, off)) > 0) {
			off += n;
			ops++;
		}
		if (n < 0)
			die("pread", path);
		report(now_ns() - t0, ops, off);
	}
	close(fd);
	return 0;
}

/* open path for the random workloads; its size in pages goes to *npages
 * (-1 after a message when the file is empty) */
static int open_pages(const char *path, int flags, long long *npages)
{
	int fd = open(path, flags);
	if (fd < 0)
		die("open", path);
	struct stat st;
	if (fstat(fd, &st))
		die("fstat", path);
	*npages = st.st_size / PAGE;
	if (*npages <= 0)
		fprintf(stderr, "helper: %s is empty\n", path);
	return fd;
}

static int randread(const char *path, long long ops)
{
	char *buf = page_buffer(PAGE, 0);
	long long npages;
	int fd = open_pages(path, O_RDONLY, &npages);
	if (npages <= 0)
		return 1;
	long long *perm = malloc(sizeof(*perm) * npages);
	for (long long i = 0; i < npages; i++)
		perm[i] = i;
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	long long done = 0, ns = 0;
	while (done < ops) {
		/* a fresh shuffle per round: every read of a round is a distinct page */
		for (long long i = npages - 1; i > 0; i--) {
			long long j = rnd() % (i + 1), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		long long n = ops - done < npages ? ops - done : npages;
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		long long t0 = now_ns();
		for (long long i = 0; i < n; i++)
			if (pread(fd, buf, PAGE, perm[i] * PAGE) != PAGE)
				die("pread", path);
		ns += now_ns() - t0;
		done += n;
	}
	close(fd);
	report(ns, done, done * PAGE);
	return 0;
}

static int randwrite(const char *path, long long ops)
{
	char *buf = page_buffer(PAGE, 1);
	long long npages;
	int fd = open_pages(path, O_WRONLY, &npages);
	if (npages <= 0)
		return 1;
	long long t0 = now_ns();
	for (long long i = 0; i < ops; i++)
		if (pwrite(fd, buf, PAGE, (long long)(rnd() % npages) * PAGE) != PAGE)
			die("pwrite", path);
	if (fsync(fd))
		die("fsync", path);
	report(now_ns() - t0, ops, ops * PAGE);
	close(fd);
	return 0;
}

static int mmaptouch(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open", path);
	struct stat st;
	if (fstat(fd, &st))
		die("fstat", path);
	volatile char *p = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap", path);
	unsigned sum = 0;
	long long t0 = now_ns();
	for (long long off = 0; off < st.st_size; off += PAGE)
		sum += p[off];
	long long ns = now_ns() - t0;
	munmap((void *)p, st.st_size);
	close(fd);
	report(ns, st.st_size / PAGE, st.st_size);
	return sum == 0xdeadbeef;  /* keep the loads */
}

static void name_of(char *out, size_t len, const char *dir, long long i)
{
	snprintf(out, len, "%s/f%07lld", dir, i);
}

static int meta(const char *op, const char *dir, long long n)
{
	char path[4096];
	struct stat st;
	long long t0 = now_ns();
	for (long long i = 0; i < n; i++) {
		name_of(path, sizeof(path), dir, i);
		if (!strcmp(op, "create")) {
			int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
			if (fd < 0 || close(fd))
				die("create", path);
		} else if (!strcmp(op, "stat")) {
			if (stat(path, &st))
				die("stat", path);
		} else if (unlink(path)) {
			die("unlink", path);
		}
	}
	report(now_ns() - t0, n, 0);
	return 0;
}

static int readdir_all(const char *dir)
{
	long long t0 = now_ns(), n = 0;
	DIR *d = opendir(dir);
	if (!d)
		die("opendir", dir);
	errno = 0;
	while (readdir(d))
		n++;
	if (errno)
		die("readdir", dir);
	closedir(d);
	report(now_ns() - t0, n, 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: helper OP ARGS...\n");
		return 2;
	}
	const char *op = argv[1];
	rng_state = 0x9E3779B97F4A7C15ULL;
	if (!strcmp(op, "seqwrite") && argc == 5)
		return seqwrite(argv[2], atoll(argv[3]), atol(argv[4]));
	if (!strcmp(op, "seqread") && argc == 4)
		return seqread(argv[2], atol(argv[3]));
	if (!strcmp(op, "randread") && argc == 5) {
		rng_state ^= strtoull(argv[4], NULL, 10) * 0x100000001B3ULL;
		return randread(argv[2], atoll(argv[3]));
	}
	if (!strcmp(op, "randwrite") && argc == 5) {
		rng_state ^= strtoull(argv[4], NULL, 10) * 0x100000001B3ULL;
		return randwrite(argv[2], atoll(argv[3]));
	}
	if (!strcmp(op, "mmaptouch") && argc == 3)
		return mmaptouch(argv[2]);
	if ((!strcmp(op, "create") || !strcmp(op, "stat") || !strcmp(op, "unlink")) && argc == 4)
		return meta(op, argv[2], atoll(argv[3]));
	if (!strcmp(op, "readdir") && argc == 3)
		return readdir_all(argv[2]);
	fprintf(stderr, "helper: bad arguments for %s\n", op);
	return 2;
}
