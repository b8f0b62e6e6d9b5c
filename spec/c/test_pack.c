/*
 * test_pack.c - the pack writer (pack.c) and the standalone reader
 * (pack_reader.c): round trips, determinism, refusals that leave the old
 * pack untouched (bad hash, duplicate address, every injected I/O and
 * allocation fault), and a reader that rejects every truncation and never
 * reads out of bounds whatever bytes it is given (run under ASan by make
 * test-sanitize). The CLI over packs is test_pack_cli.c.
 *
 *   test_pack --seeds DIR   writes the fuzzer's seed packs instead
 *
 * Threads: main only.
 */
#define _GNU_SOURCE
#include <dirent.h>

#include "check.h"
#include "pack_support.h"

/* The small sample pack: 5 entries, 139 bytes of strings after the index. */
#define SAMPLE_STRINGS_OFF (64 + 5 * 64)
#define SAMPLE_DATA_OFF 528
#define SAMPLE_SIZE 624
#define SAMPLE_XXH3 "8ea90c51ab6e0de06862d853789e93a8"

static char *dir;

/* Names in dir other than the given ones (temp litter); 0 when none. */
static int litter(const char *keep1, const char *keep2)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && strcmp(e->d_name, "a.bin") != 0 &&
            strcmp(e->d_name, "big.bin") != 0 && (!keep1 || strcmp(e->d_name, keep1) != 0) &&
            (!keep2 || strcmp(e->d_name, keep2) != 0)) {
            fprintf(stderr, "litter: %s\n", e->d_name);
            n++;
        }
    if (d)
        closedir(d);
    return n;
}

/* Every entry's blob read back equals the sample's bytes, and verifies. */
static void check_contents(const pkr_pack *p, const p_sample *s)
{
    for (int k = 0; k < P_NSAMPLE; k++) {
        const pack_entry *e = &s->e[k];
        size_t i, len;
        REQUIRE(pkr_find_address(p, e->address, &i) == 0);
        pkr_info info;
        REQUIRE(pkr_entry(p, i, &info) == 0);
        CHECK(strcmp(info.address, e->address) == 0 && info.address_len == strlen(e->address));
        CHECK(strcmp(info.asset_id, e->asset_id) == 0);
        CHECK(info.size == e->size && info.offset % PKR_ALIGN == 0);
        CHECK(memcmp(info.hash, e->hash, 16) == 0);
        unsigned char *buf = malloc(e->size + 1);
        CHECK(pkr_read(p, i, buf, e->size, &len) == 0 && len == e->size);
        unsigned char *want = p_slurp(e->size ? e->blob_path : s->a_path, &len);
        CHECK(want && memcmp(buf, want + e->blob_offset, e->size) == 0);
        CHECK(pkr_verify(p, i, &P_XXH3) == 0);
        free(want);
        free(buf);
    }
}

static void test_round_trip(void)
{
    p_sample s;
    int made = p_sample_make(&s, dir, 1); /* not inside REQUIRE: it evaluates twice */
    REQUIRE(made == 0);
    char *path = t_path(dir, "big.pack");
    CHECK(pack_write(path, s.e, P_NSAMPLE) == 0);
    CHECK(strcmp(s.e[0].address, "audio/silence") == 0); /* sorted in place */
    pkr_pack *p = NULL;
    CHECK(pkr_open(path, &p) == 0 && pkr_count(p) == P_NSAMPLE);
    check_contents(p, &s);
    size_t i, got, j;
    CHECK(pkr_find_address(p, "levels/big", &i) == 0 && i == 1);
    /* streaming in odd pieces gives the same bytes */
    unsigned char piece[100003];
    uint64_t off = 0;
    int same = 1;
    while (pkr_read_at(p, i, off, piece, sizeof piece, &got) == 0 && got > 0) {
        same &= memcmp(piece, s.big + off, got) == 0;
        off += got;
    }
    CHECK(same && off == P_BIG_SIZE);
    CHECK(pkr_read_at(p, i, P_BIG_SIZE + 1, piece, 1, &got) == PKR_EINVAL);
    CHECK(pkr_read(p, i, piece, sizeof piece, &got) == PKR_ERANGE && got == P_BIG_SIZE);
    const void *data;
    CHECK(pkr_data(p, i, &data) == PKR_EINVAL); /* file pack: no zero-copy */
    CHECK(pkr_entry(p, P_NSAMPLE, &(pkr_info){0}) == PKR_EINVAL);
    /* ids: shared by levels/big (1) and sprites/hero (3): the lowest index */
    CHECK(pkr_find_id(p, "9cf079a50663ea85", &j) == 0 && j == 1);
    CHECK(pkr_find_id(p, "1111222233334444", &j) == 0 && j == 2);
    CHECK(pkr_find_id(p, "ffff000000000001", &j) == 0 && j == 4);
    CHECK(pkr_find_id(p, "ffff", &j) == PKR_ENOTFOUND);
    CHECK(pkr_find_address(p, "sprites", &j) == PKR_ENOTFOUND);
    CHECK(pkr_find_address(p, "zz", &j) == PKR_ENOTFOUND);
    CHECK(pkr_find_address(p, "a", &j) == PKR_ENOTFOUND);
    pkr_close(p);
    /* the same from memory, zero-copy */
    size_t len;
    unsigned char *bytes = p_slurp(path, &len);
    CHECK(len % PKR_ALIGN == 0);
    CHECK(pkr_open_memory(bytes, len, &p) == 0);
    check_contents(p, &s);
    CHECK(pkr_data(p, 1, &data) == 0 && memcmp(data, s.big, P_BIG_SIZE) == 0);
    pkr_close(p);
    free(bytes);
    unlink(path);
    free(path);
    p_sample_free(&s);
}

static void test_empty_pack(void)
{
    char *path = t_path(dir, "empty.pack");
    CHECK(pack_write(path, NULL, 0) == 0);
    size_t len, i;
    unsigned char *bytes = p_slurp(path, &len);
    pkr_pack *p = NULL;
    CHECK(len == PKR_HEADER_SIZE && pkr_open_memory(bytes, len, &p) == 0);
    CHECK(pkr_count(p) == 0 && pkr_find_address(p, "x", &i) == PKR_ENOTFOUND);
    CHECK(pkr_find_id(p, "x", &i) == PKR_ENOTFOUND);
    pkr_close(p);
    free(bytes);
    unlink(path);
    free(path);
}

/* Same set in any order: the same bytes; and the bytes are the format's. */
static void test_deterministic(void)
{
    p_sample s;
    int made = p_sample_make(&s, dir, 0);
    REQUIRE(made == 0);
    char *p1 = t_path(dir, "one.pack"), *p2 = t_path(dir, "two.pack");
    CHECK(pack_write(p1, s.e, P_NSAMPLE) == 0);
    uint64_t seed = 42;
    for (int k = P_NSAMPLE - 1; k > 0; k--) { /* shuffle */
        int j = (int)(p_rand(&seed) % (uint64_t)(k + 1));
        pack_entry t = s.e[k];
        s.e[k] = s.e[j];
        s.e[j] = t;
    }
    CHECK(pack_write(p2, s.e, P_NSAMPLE) == 0);
    size_t n1, n2;
    unsigned char *b1 = p_slurp(p1, &n1), *b2 = p_slurp(p2, &n2);
    CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0);
    /* Frozen: version 1 of this set is exactly these bytes on any machine. */
    char hex[HASH_HEX_LEN + 1];
    hash_hex(b1, n1, hex);
    CHECK(n1 == SAMPLE_SIZE && strcmp(hex, SAMPLE_XXH3) == 0);
    if (n1 != SAMPLE_SIZE || strcmp(hex, SAMPLE_XXH3) != 0)
        fprintf(stderr, "sample pack: %zu bytes, %s\n", n1, hex);
    free(b1);
    free(b2);
    unlink(p1);
    unlink(p2);
    free(p1);
    free(p2);
    p_sample_free(&s);
}

/* A refused write leaves the old pack exactly as it was, and no litter. */
static void test_refusals(void)
{
    p_sample s;
    int made = p_sample_make(&s, dir, 0);
    REQUIRE(made == 0);
    char *path = t_path(dir, "keep.pack");
    int wrote = pack_write(path, s.e, P_NSAMPLE);
    REQUIRE(wrote == 0);
    size_t n0, n1;
    unsigned char *before = p_slurp(path, &n0);

    s.e[3].hash[5] ^= 1; /* sorted: e[3] is sprites/hero */
    CHECK(pack_write(path, s.e, P_NSAMPLE) == PACKER_EIO);
    CHECK(strstr(packer_last_error(), "sprites/hero") != NULL);
    s.e[3].hash[5] ^= 1;

    pack_entry dup[2] = {s.e[0], s.e[0]};
    dup[1].asset_id = "other";
    CHECK(pack_write(path, dup, 2) == PACKER_EINVAL);
    CHECK(strstr(packer_last_error(), "duplicate address audio/silence") != NULL);

    pack_entry bad = s.e[1];
    bad.size = 1 << 20; /* past the end of big.bin (17 bytes) */
    CHECK(pack_write(path, &bad, 1) == PACKER_EIO && strstr(packer_last_error(), "levels/big"));
    bad = s.e[1];
    bad.blob_path = "/nonexistent/blob";
    CHECK(pack_write(path, &bad, 1) == PACKER_EIO);
    bad = s.e[1];
    bad.address = "";
    CHECK(pack_write(path, &bad, 1) == PACKER_EINVAL);
    bad = s.e[1];
    bad.asset_id = NULL;
    CHECK(pack_write(path, &bad, 1) == PACKER_EINVAL);

    unsigned char *after = p_slurp(path, &n1);
    CHECK(n0 == n1 && memcmp(before, after, n0) == 0);
    CHECK(litter("keep.pack", NULL) == 0);
    free(before);
    free(after);
    unlink(path);
    free(path);
    p_sample_free(&s);
}

/* Each write, fsync, rename and allocation of pack_write fails in turn:
 * the call fails, the old pack stays, no temp file is left behind. */
static void test_faults(void)
{
    p_sample s;
    int made = p_sample_make(&s, dir, 0);
    REQUIRE(made == 0);
    char *path = t_path(dir, "fault.pack");
    pack_entry one = s.e[0];
    char *full = t_path(dir, "full.pack");
    int wrote = pack_write(path, &one, 1) || pack_write(full, s.e, P_NSAMPLE);
    REQUIRE(wrote == 0);
    size_t n_old, n_new, n;
    unsigned char *old = p_slurp(path, &n_old), *new = p_slurp(full, &n_new);
    int runs = 0, reached_failed = 1, old_or_new = 1, clean = 1;
    for (long k = 1; k < 10000; k++, runs++) {
        pk_fault_arm(FAULT_ALL, k);
        int rc = pack_write(path, s.e, P_NSAMPLE);
        long seen = pk_fault_count();
        pk_fault_arm(0, 0);
        if (seen < k)
            break; /* ran to the end without reaching the k-th operation */
        reached_failed &= rc != 0;
        unsigned char *now = p_slurp(path, &n);
        int was_old = n == n_old && memcmp(now, old, n) == 0;
        /* new only when the fault hit after the rename: the directory fsync */
        old_or_new &= was_old || (n == n_new && memcmp(now, new, n) == 0 &&
                                  strstr(packer_last_error(), "cannot fsync"));
        free(now);
        clean &= litter("fault.pack", "full.pack") == 0;
        if (!was_old)
            CHECK(pack_write(path, &one, 1) == 0);
    }
    CHECK(runs > 10 && reached_failed && old_or_new && clean);
    free(old);
    free(new);
    unlink(full);
    free(full);
    unlink(path);
    free(path);
    p_sample_free(&s);
}

/* ---- the reader on bad bytes --------------------------------------------------- */

static unsigned char *small_pack(size_t *len)
{
    p_sample s;
    char *path = t_path(dir, "small.pack");
    unsigned char *b = NULL;
    if (p_sample_make(&s, dir, 0) == 0 && pack_write(path, s.e, P_NSAMPLE) == 0)
        b = p_slurp(path, len);
    unlink(path);
    free(path);
    p_sample_free(&s);
    return b;
}

/* Everything a reader can do with an open pack; ASan watches the bounds. */
static int exercise(const pkr_pack *p)
{
    int ok = 1;
    for (size_t i = 0; i < pkr_count(p); i++) {
        pkr_info e;
        size_t j, len;
        ok &= pkr_entry(p, i, &e) == 0 && strlen(e.address) == e.address_len;
        ok &= strlen(e.asset_id) == e.asset_id_len;
        ok &= pkr_find_address(p, e.address, &j) == 0 && j == i;
        ok &= pkr_find_id(p, e.asset_id, &j) == 0 && j <= i;
        unsigned char *buf = malloc(e.size + 1);
        ok &= pkr_read(p, i, buf, e.size, &len) == 0 && len == e.size;
        int v = pkr_verify(p, i, &P_XXH3);
        ok &= v == 0 || v == PKR_EHASH;
        free(buf);
    }
    return ok;
}

static void test_truncations(void)
{
    size_t len;
    unsigned char *b = small_pack(&len);
    REQUIRE(b);
    int all = 1;
    for (size_t n = 0; n < len; n++) {
        unsigned char *cut = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(cut, b, n);
        pkr_pack *p = (pkr_pack *)1;
        int rc = pkr_open_memory(cut, n, &p);
        all &= rc == PKR_ETRUNC && p == NULL;
        free(cut);
    }
    CHECK(all);
    char *path = t_path(dir, "cut.pack");
    pkr_pack *p = NULL;
    CHECK(p_spit(path, b, len - 1) == 0 && pkr_open(path, &p) == PKR_ETRUNC && !p);
    CHECK(p_spit(path, b, 63) == 0 && pkr_open(path, &p) == PKR_ETRUNC && !p);
    unsigned char *longer = calloc(1, len + 16);
    memcpy(longer, b, len);
    CHECK(p_spit(path, longer, len + 16) == 0 && pkr_open(path, &p) == PKR_EFORMAT && !p);
    CHECK(pkr_open(dir, &p) == PKR_EIO && !p);
    CHECK(pkr_open("/nonexistent/x.pack", &p) == PKR_EIO && errno == ENOENT);
    free(longer);
    unlink(path);
    free(path);
    free(b);
}

/* Store the checksum of m's first data_off bytes, as a writer would. */
static void reseal(unsigned char *m, size_t data_off)
{
    uint64_t c = pkr_checksum(m, data_off);
    for (int k = 0; k < 8; k++)
        m[56 + k] = (unsigned char)(c >> (8 * k));
}

/* A copy of b with byte `at` xor-ed with x; resealed: checksum recomputed
 * over what the (possibly damaged) header says is the metadata. */
static int open_flipped(const unsigned char *b, size_t len, size_t at, unsigned x, int sealed,
                        int *exercised_ok)
{
    unsigned char *m = malloc(len);
    memcpy(m, b, len);
    m[at] ^= (unsigned char)x;
    uint64_t d = 0;
    for (int k = 7; k >= 0; k--)
        d = d << 8 | m[40 + k];
    if (sealed && d >= PKR_HEADER_SIZE && d <= len)
        reseal(m, (size_t)d);
    pkr_pack *p = NULL;
    int rc = pkr_open_memory(m, len, &p);
    if (rc == 0)
        *exercised_ok &= exercise(p);
    pkr_close(p);
    free(m);
    return rc;
}

static void test_flips(void)
{
    size_t len;
    unsigned char *b = small_pack(&len);
    REQUIRE(b);
    pkr_pack *p = NULL;
    CHECK(pkr_open_memory(b, len, &p) == 0 && exercise(p));
    size_t data_off = 0;
    pkr_info e;
    CHECK(pkr_entry(p, 0, &e) == 0);
    data_off = (size_t)e.offset;
    pkr_close(p);
    int ok = 1, meta_rejected = 1, opened = 0, rejected = 0;
    for (size_t at = 0; at < len; at++)
        for (unsigned bit = 1; bit < 256; bit <<= 1) {
            int rc = open_flipped(b, len, at, bit, 0, &ok);
            if (at < data_off) /* the checksum covers everything before the blobs */
                meta_rejected &= rc != 0;
            rc = open_flipped(b, len, at, bit, 1, &ok);
            opened += rc == 0;
            rejected += rc != 0;
        }
    uint64_t seed = 7;
    for (int k = 0; k < 20000; k++) { /* random bytes, several at a time, resealed */
        size_t at = (size_t)(p_rand(&seed) % len);
        int rc = open_flipped(b, len, at, (unsigned)(p_rand(&seed) % 255 + 1), 1, &ok);
        opened += rc == 0;
        rejected += rc != 0;
    }
    CHECK(ok && meta_rejected && opened > 0 && rejected > 0);
    free(b);
}

/* Rules behind the checksum: damage resealed on purpose is still refused. */
static void test_structure(void)
{
    size_t len;
    unsigned char *b = small_pack(&len);
    REQUIRE(b);
    struct {
        size_t at;
        unsigned char val;
        int want;
    } cases[] = {
        {0, 'X', PKR_EMAGIC},
        {8, 2, PKR_EVERSION},
        {12, 6, PKR_EFORMAT},                     /* entry count */
        {16, 65, PKR_EFORMAT},                    /* index offset */
        {64 + 16, 0x30, PKR_EFORMAT},             /* blob offset of entry 0 */
        {64 + 24 + 7, 1, PKR_EFORMAT},            /* huge blob size */
        {64 + 48, 9, PKR_EFORMAT},                /* id order out of range */
        {64 + 48, 1, PKR_EFORMAT},                /* id order no longer sorted */
        {64 + 60, 1, PKR_EFORMAT},                /* reserved */
        {64 + 4, 3, PKR_EFORMAT},                 /* address length: NUL inside / order */
        {SAMPLE_STRINGS_OFF, 'z', PKR_EFORMAT},   /* first address > second */
        {SAMPLE_STRINGS_OFF + 2, 0, PKR_EFORMAT}, /* NUL inside an address */
        {SAMPLE_DATA_OFF - 1, 1, PKR_EFORMAT},    /* padding before the blobs */
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        unsigned char *m = malloc(len);
        memcpy(m, b, len);
        m[cases[k].at] = cases[k].val;
        reseal(m, SAMPLE_DATA_OFF);
        pkr_pack *p = NULL;
        int rc = pkr_open_memory(m, len, &p);
        CHECK(rc == cases[k].want && !p);
        if (rc != cases[k].want)
            fprintf(stderr, "case %zu (byte %zu): %d\n", k, cases[k].at, rc);
        free(m);
    }
    b[60] ^= 1;
    pkr_pack *p = NULL;
    CHECK(pkr_open_memory(b, len, &p) == PKR_ECHECKSUM && !p);
    b[60] ^= 1;
    b[SAMPLE_SIZE - 24] ^= 4; /* a byte of sprites/hero's blob: opens, fails its hash */
    CHECK(pkr_open_memory(b, len, &p) == 0);
    size_t bad = 0, fails = 0;
    for (size_t i = 0; i < pkr_count(p); i++)
        if (pkr_verify(p, i, &P_XXH3) == PKR_EHASH) {
            bad = i;
            fails++;
        }
    CHECK(fails == 1 && bad == P_NSAMPLE - 2);
    pkr_close(p);
    free(b);
}

static int write_seeds(const char *out)
{
    p_sample s;
    char *a = t_path(out, "sample.pack"), *e = t_path(out, "empty.pack");
    char *o = t_path(out, "one.pack");
    int rc = p_sample_make(&s, dir, 0) || pack_write(a, s.e, P_NSAMPLE) || pack_write(e, NULL, 0) ||
             pack_write(o, &s.e[4], 1);
    p_sample_free(&s);
    free(a);
    free(e);
    free(o);
    return rc;
}

/* The hex form of a content hash, both ways; the cache and the no-op path
 * read it back for every asset. */
static void test_hash_hex(void)
{
    unsigned char bin[16], back[16];
    char hex[HASH_HEX_LEN + 1];
    for (int i = 0; i < 16; i++)
        bin[i] = (unsigned char)(i * 17 + 3);
    hash_to_hex(bin, hex);
    CHECK(strcmp(hex, "031425364758697a8b9cadbecfe0f102") == 0);
    CHECK(hash_from_hex(hex, back) && memcmp(bin, back, 16) == 0);
    CHECK(hash_from_hex("ffffffffffffffffffffffffffffffff", back) && back[0] == 255 &&
          back[15] == 255);
    const char *bad[] = {"031425364758697a8b9cadbecfe0f10",   /* short */
                         "031425364758697a8b9cadbecfe0f1020", /* long */
                         "031425364758697A8B9CADBECFE0F102",  /* upper case */
                         "03142536475869 a8b9cadbecfe0f102",  /* space */
                         "0314253647586g7a8b9cadbecfe0f102",  /* not hex */
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!hash_from_hex(bad[i], back));
}

int main(int argc, char **argv)
{
    dir = t_tmpdir("pack");
    if (!dir)
        return 1;
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0) {
        int rc = write_seeds(argv[2]);
        t_rmrf(dir);
        return rc ? 1 : 0;
    }
    test_round_trip();
    test_empty_pack();
    test_deterministic();
    test_refusals();
    test_faults();
    test_truncations();
    test_flips();
    test_structure();
    test_hash_hex();
    t_rmrf(dir);
    free(dir);
    CHECK_DONE();
}
