/* A buffer cache in the style of a 2000s database over shared memory: one big
 * MAP_SHARED mapping of a file, whose pages are pointed at "disk blocks" (pages of
 * a block pool) one by one with remap_file_pages(2), each verified after it.
 *
 *   bufcache FILE MAP_PAGES REMAPS POOL_PAGES
 *
 * FILE gets MAP_PAGES pages (sparse), the first POOL_PAGES holding tagged blocks.
 * Remap i points window page w = (i * 40503) % MAP_PAGES (distinct while i < MAP_PAGES:
 * the stride is odd and MAP_PAGES a power of two) at block b = (w * 7919 + 1) %
 * POOL_PAGES (adjacent window pages show blocks 7919 apart, so no two remaps can
 * merge into one VMA under the kernel's emulation), then reads the whole page and
 * checks it holds block b.  Prints one line:
 *   done remaps=N verified=N vmas=V        or
 *   failed at=I errno=E vmas=V verified=N  (exit 1) */
#include "rfp_common.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bufcache FILE MAP_PAGES REMAPS POOL_PAGES\n");
        return 2;
    }
    long npages = atol(argv[2]), nremaps = atol(argv[3]), pool = atol(argv[4]);
    int fd = make_file(argv[1], pool);
    if (ftruncate(fd, npages * P) < 0) {
        perror("ftruncate");
        return 99;
    }
    char *m = mmap(NULL, npages * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        return 99;
    }
    madvise(m, npages * P, MADV_RANDOM);  /* a buffer cache reads no neighbours */
    long verified = 0;
    for (long i = 0; i < nremaps; i++) {
        long w = (i * 40503) % npages, b = (w * 7919 + 1) % pool;
        if (remap_file_pages(m + w * P, P, 0, b, MAP_NONBLOCK) < 0) {
            int e = errno;
            printf("failed at=%ld errno=%s vmas=%d verified=%ld\n", i, en(e),
                   vmas_in(m, npages * P), verified);
            return 1;
        }
        if (!page_ok(m + w * P, b)) {
            printf("wrong at=%ld page=%ld tag=%ld want=%ld\n", i, w, tag(m + w * P), b);
            return 3;
        }
        verified++;
    }
    /* Every page remapped so far still shows its block (sampled: one in 64). */
    for (long i = 0; i < nremaps; i += 64) {
        long w = (i * 40503) % npages, b = (w * 7919 + 1) % pool;
        if (!page_ok(m + w * P, b)) {
            printf("lost at=%ld page=%ld tag=%ld want=%ld\n", i, w, tag(m + w * P), b);
            return 3;
        }
    }
    printf("done remaps=%ld verified=%ld vmas=%d\n", nremaps, verified, vmas_in(m, npages * P));
    return 0;
}
