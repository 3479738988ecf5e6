/* Helpers shared by the tests/rfp C programs (kernel selftest style: each check
 * prints one line; the pytest side compares the lines of two runs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_CHGPROT
#define MAP_CHGPROT 0x20000
#endif
#define P 4096L

__attribute__((unused)) static const char *en(int e) {
    const char *n = e ? strerrorname_np(e) : "0";
    return n ? n : "E?";
}

/* A file of npages pages; page i starts with the 8-byte tag i and is filled with
 * byte 'a' + i % 26 after it. */
__attribute__((unused)) static int make_file(const char *path, long npages) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        exit(99);
    }
    char page[P];
    for (long i = 0; i < npages; i++) {
        memset(page, 'a' + i % 26, P);
        memcpy(page, &i, 8);
        if (pwrite(fd, page, P, i * P) != P) {
            perror("pwrite");
            exit(99);
        }
    }
    return fd;
}

static long tag(const volatile char *p) {
    long t;
    memcpy(&t, (const char *)p, 8);
    return t;
}

/* Whether the page at p holds tag t and its fill (every byte checked). */
__attribute__((unused)) static int page_ok(const volatile char *p, long t) {
    if (tag(p) != t)
        return 0;
    for (long i = 8; i < P; i++)
        if (p[i] != (char)('a' + t % 26))
            return 0;
    return 1;
}

static volatile void *expect_addr;
static void segv_handler(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    _exit(si->si_addr == expect_addr ? 100 + sig : 60 + sig);
}

/* Touch addr in a child (a load, or a store when write): 0 if it survived, the
 * signal number if it died (+100 when si_addr was addr, +60 when it was not). */
__attribute__((unused)) static int touch(volatile char *addr, int write) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction sa = {0};
        sa.sa_sigaction = segv_handler;
        sa.sa_flags = SA_SIGINFO;
        expect_addr = addr;
        sigaction(SIGSEGV, &sa, NULL);
        sigaction(SIGBUS, &sa, NULL);
        if (write)
            *addr = *addr;  /* a store that changes nothing when it is allowed */
        else
            (void)*addr;
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return -WTERMSIG(st);
}

/* How many lines of /proc/self/maps overlap [a, a+len): the VMAs of a mapping. */
__attribute__((unused)) static int vmas_in(const void *a, size_t len) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    uintptr_t lo = (uintptr_t)a, hi = lo + len;
    while (f && fgets(line, sizeof line, f)) {
        uintptr_t s, e;
        if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < hi && e > lo)
            n++;
    }
    if (f)
        fclose(f);
    return n;
}
