/*
 * pack_support.h - sample packs for the pack tests (test_pack.c,
 * test_pack_cli.c): blob files on disk, their XXH3-128 hashes, an entry
 * set covering the format's corners, whole files as bytes. Header-only
 * like support.h, which it includes; a test defines _GNU_SOURCE first.
 *
 * Threads: none of these keep state; tests call them from main.
 */
#ifndef PACKER_PACK_SUPPORT_H
#define PACKER_PACK_SUPPORT_H

#include "internal.h"
#include "pack_reader.h"
#include "support.h"

#define P_BIG_SIZE (3u * 1024 * 1024 + 5) /* a multi-MiB blob, not a multiple of 16 */
#define P_NSAMPLE 5

/* XXH3-128 canonical of a buffer (through hash.c, like the writer). */
static inline void p_hash(const void *buf, size_t len, unsigned char out[16])
{
    hash_stream *h = hash_stream_new();
    hash_stream_update(h, buf, len);
    hash_stream_end(h, out);
}

/* pkr_hasher over hash.c's XXH3-128 stream, as the packer CLI uses. */
static inline void *p_begin(void *ud)
{
    (void)ud;
    return hash_stream_new();
}

static inline void p_update(void *st, const void *buf, size_t len)
{
    hash_stream_update(st, buf, len);
}

static inline void p_end(void *st, unsigned char out[16])
{
    hash_stream_end(st, out);
}

static const pkr_hasher P_XXH3 = {p_begin, p_update, p_end, NULL};

/* Whole file as bytes (*len set); NULL when unreadable. Caller frees. */
static inline unsigned char *p_slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    *len = 0;
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = buf && n >= 0 ? fread(buf, 1, (size_t)n, fp) : 0;
    fclose(fp);
    return buf;
}

static inline int p_spit(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    int rc = fwrite(buf, 1, len, fp) == len ? 0 : -1;
    return fclose(fp) == 0 ? rc : -1;
}

static inline uint64_t p_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The sample set: blobs in dir/a.bin (two entries at different offsets)
 * and dir/big.bin, an empty blob, an asset id shared by two entries, and
 * sizes that need padding. Listed out of address order on purpose. */
typedef struct {
    pack_entry e[P_NSAMPLE];
    char *a_path, *big_path;
    unsigned char *big;
} p_sample;

static inline void p_entry(pack_entry *e, const char *addr, const char *id, const char *path,
                           uint64_t off, const void *bytes, uint64_t size)
{
    *e = (pack_entry){addr, id, path, off, size, {0}};
    p_hash(bytes, (size_t)size, e->hash);
}

/* with_big: include the multi-MiB blob (else a 17-byte one). 0 or -1. */
static inline int p_sample_make(p_sample *s, const char *dir, int with_big)
{
    static const char a[] = "hero-bytes!enemy-bytes, longer than sixteen";
    memset(s, 0, sizeof *s);
    s->a_path = t_path(dir, "a.bin");
    s->big_path = t_path(dir, "big.bin");
    size_t big_len = with_big ? P_BIG_SIZE : 17;
    s->big = malloc(big_len);
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; s->big && i < big_len; i++)
        s->big[i] = (unsigned char)p_rand(&seed);
    if (!s->a_path || !s->big || p_spit(s->a_path, a, sizeof a - 1) != 0 ||
        p_spit(s->big_path, s->big, big_len) != 0)
        return -1;
    p_entry(&s->e[0], "sprites/hero", "9cf079a50663ea85", s->a_path, 0, a, 11);
    p_entry(&s->e[1], "sprites/enemy", "1111222233334444", s->a_path, 11, a + 11,
            sizeof a - 1 - 11);
    p_entry(&s->e[2], "audio/silence", "aaaa000000000000", NULL, 0, "", 0);
    p_entry(&s->e[3], "levels/big", "9cf079a50663ea85", s->big_path, 0, s->big, big_len);
    p_entry(&s->e[4], "z", "ffff000000000001", s->a_path, 0, a, 1);
    return 0;
}

static inline void p_sample_free(p_sample *s)
{
    free(s->a_path);
    free(s->big_path);
    free(s->big);
}

#endif
