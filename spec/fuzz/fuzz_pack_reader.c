/*
 * fuzz_pack_reader.c - libFuzzer harness for the standalone pack reader
 * (src/pack_reader.c, built alone: no libpacker, no xxHash).
 *
 * Each input is opened twice with pkr_open_memory: as it is, and
 * "resealed" (its metadata checksum recomputed over what its header says
 * is the metadata), so that mutations get past the checksum and reach the
 * structural checks behind it. When a pack opens, every entry is listed,
 * looked up by address and by asset id, read whole, in pieces and
 * zero-copy, and verified with a toy hash. Invariants under test: no
 * crash, no out-of-bounds read (ASan), no leak, and what opens is
 * coherent (lookups find their own entry, reads return the blob's size,
 * blobs lie inside the input).
 *
 *   make fuzz
 *   build-fuzz/fuzz_pack_reader -max_total_time=60 spec/fuzz/pack-corpus
 *
 * Seeds (spec/fuzz/pack-corpus) come from build/tests/test_pack --seeds DIR.
 */
#include <stdlib.h>
#include <string.h>

#include "pack_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MUST(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* A toy streaming hash (not XXH3): enough to drive pkr_verify's paths. */
static unsigned char toy_state[16];

static void *toy_begin(void *ud)
{
    (void)ud;
    memset(toy_state, 0, sizeof toy_state);
    return toy_state;
}

static void toy_update(void *st, const void *buf, size_t len)
{
    unsigned char *s = st;
    const unsigned char *b = buf;
    for (size_t i = 0; i < len; i++)
        s[i % 16] = (unsigned char)(s[i % 16] * 31 + b[i]);
}

static void toy_end(void *st, unsigned char out[PKR_HASH_SIZE])
{
    memcpy(out, st, PKR_HASH_SIZE);
}

static const pkr_hasher TOY = {toy_begin, toy_update, toy_end, NULL};

static void exercise_entry(const pkr_pack *p, size_t i, const uint8_t *base, size_t len)
{
    pkr_info e;
    size_t j, got;
    MUST(pkr_entry(p, i, &e) == 0);
    MUST(strlen(e.address) == e.address_len && strlen(e.asset_id) == e.asset_id_len);
    MUST(pkr_find_address(p, e.address, &j) == 0 && j == i);
    MUST(pkr_find_id(p, e.asset_id, &j) == 0 && j <= i);
    MUST(e.offset <= len && e.size <= len - e.offset);
    unsigned char *buf = malloc(e.size + 1);
    MUST(buf && pkr_read(p, i, buf, e.size, &got) == 0 && got == e.size);
    MUST(memcmp(buf, base + e.offset, e.size) == 0);
    unsigned char piece[7];
    for (uint64_t off = 0; off < e.size; off += got)
        MUST(pkr_read_at(p, i, off, piece, sizeof piece, &got) == 0 && got > 0);
    const void *ptr;
    MUST(pkr_data(p, i, &ptr) == 0 && ptr == base + e.offset);
    int v = pkr_verify(p, i, &TOY);
    MUST(v == 0 || v == PKR_EHASH);
    free(buf);
}

static void exercise(const uint8_t *buf, size_t len)
{
    pkr_pack *p = NULL;
    if (pkr_open_memory(buf, len, &p) != 0) {
        MUST(p == NULL);
        return;
    }
    size_t j;
    for (size_t i = 0; i < pkr_count(p); i++)
        exercise_entry(p, i, buf, len);
    MUST(pkr_entry(p, pkr_count(p), &(pkr_info){0}) == PKR_EINVAL);
    int rc = pkr_find_address(p, "sprites/hero", &j);
    MUST(rc == 0 || rc == PKR_ENOTFOUND);
    rc = pkr_find_id(p, "", &j);
    MUST(rc == PKR_ENOTFOUND); /* ids are never empty */
    pkr_close(p);
}

static uint64_t rd64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | b[k];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so ASan catches any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    exercise(buf, size);
    uint64_t meta = size >= PKR_HEADER_SIZE ? rd64(buf + 40) : 0;
    if (meta >= PKR_HEADER_SIZE && meta <= size) {
        uint64_t c = pkr_checksum(buf, (size_t)meta);
        for (int k = 0; k < 8; k++)
            buf[56 + k] = (uint8_t)(c >> (8 * k));
        exercise(buf, size);
    }
    free(buf);
    return 0;
}
