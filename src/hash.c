/*
 * hash.c - content hashes (XXH3-128 from libxxhash) and random ids.
 *
 * Content hashes are printed as 32 lowercase hex digits of the canonical
 * (big-endian) XXH128 form, so they are stable across machines.
 *
 * Threads: any.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

static void to_hex(const unsigned char *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void canon_hex(XXH128_hash_t h, char out[HASH_HEX_LEN + 1])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    to_hex(c.digest, sizeof c.digest, out);
}

void hash_hex(const void *buf, size_t len, char out[HASH_HEX_LEN + 1])
{
    canon_hex(XXH3_128bits(buf, len), out);
}

int hash_file(const char *path, char out[HASH_HEX_LEN + 1], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pk_err_errno("cannot open", path);
    int rc = hash_fd(fd, path, out, size);
    close(fd);
    return rc;
}

int hash_fd(int fd, const char *path, char out[HASH_HEX_LEN + 1], uint64_t *size)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return pk_err(PACKER_ENOMEM, "out of memory");
    XXH3_128bits_reset(st);
    static _Thread_local unsigned char buf[1 << 16];
    uint64_t total = 0;
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = pk_err_errno("cannot read", path);
            break;
        }
        if (r == 0)
            break;
        XXH3_128bits_update(st, buf, (size_t)r);
        total += (uint64_t)r;
    }
    if (rc == 0) {
        canon_hex(XXH3_128bits_digest(st), out);
        if (size)
            *size = total;
    }
    XXH3_freeState(st);
    return rc;
}

void hash_to_hex(const unsigned char bin[16], char out[HASH_HEX_LEN + 1])
{
    to_hex(bin, 16, out);
}

/* Lower-case hex digit values plus one (0: not a digit), by character. */
static const unsigned char hex_value[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* Every no-op build turns a hash back into bytes per asset: a table, not
 * a chain of comparisons per digit. */
bool hash_from_hex(const char *hex, unsigned char bin[16])
{
    for (int i = 0; i < 16; i++) {
        unsigned hi = hex_value[(unsigned char)hex[2 * i]];
        unsigned lo = hi ? hex_value[(unsigned char)hex[2 * i + 1]] : 0;
        if (!lo)
            return false;
        bin[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
    }
    return hex[32] == '\0';
}

struct hash_stream {
    XXH3_state_t *st;
};

hash_stream *hash_stream_new(void)
{
    hash_stream *h = pk_malloc(sizeof *h);
    if (h && !(h->st = XXH3_createState())) {
        pk_free(h);
        h = NULL;
    }
    if (h)
        XXH3_128bits_reset(h->st);
    return h;
}

void hash_stream_update(hash_stream *h, const void *buf, size_t len)
{
    XXH3_128bits_update(h->st, buf, len);
}

void hash_stream_end(hash_stream *h, unsigned char out[16])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h->st));
    memcpy(out, c.digest, sizeof c.digest);
    XXH3_freeState(h->st);
    pk_free(h);
}

uint64_t hash64(const char *s)
{
    return XXH3_64bits(s, strlen(s));
}

void hash_random_hex(char *out, size_t nbytes)
{
    unsigned char b[32];
    if (nbytes > sizeof b)
        nbytes = sizeof b;
    size_t got = 0;
    while (got < nbytes) {
        ssize_t r = getrandom(b + got, nbytes - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) { /* no entropy source: fall back to time and pid mixing */
            uint64_t x = XXH3_64bits(&got, sizeof got) ^ (uint64_t)getpid();
            memcpy(b + got, &x, nbytes - got < 8 ? nbytes - got : 8);
            got += nbytes - got < 8 ? nbytes - got : 8;
            continue;
        }
        got += (size_t)r;
    }
    to_hex(b, nbytes, out);
}
