/*
 * pack_reader.c - the pack reader (pack_reader.h, docs/pack-format.md).
 *
 * Standalone: libc and POSIX file I/O only, so a game runtime can take
 * this file and its header as they are. Opening validates the whole
 * metadata region (header, index, strings: bytes 0..data offset-1), which
 * it holds in memory (a copy for file packs, the caller's buffer for
 * memory packs); every later call trusts only what validation proved:
 * string offsets and lengths, blob offsets and sizes inside the file, the
 * id order a permutation. Blob bytes are read on demand with pread, or
 * from the caller's buffer.
 *
 * Threads: handles are immutable after open; any thread may call any
 * function but pkr_close concurrently.
 */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pack_reader.h"

/* Record fields (docs/pack-format.md, "Index"). */
enum {
    REC_ADDR_OFF = 0,
    REC_ADDR_LEN = 4,
    REC_ID_OFF = 8,
    REC_ID_LEN = 12,
    REC_DATA_OFF = 16,
    REC_SIZE = 24,
    REC_HASH = 32,
    REC_ID_ORDER = 48,
    REC_RESERVED = 52
};

#define CHECKSUM_AT 56
#define VERIFY_CHUNK (64u * 1024u)

struct pkr_pack {
    const unsigned char *meta; /* bytes 0..data_off-1, validated */
    unsigned char *owned;      /* file packs: the copy meta points to */
    const unsigned char *mem;  /* memory packs: the whole pack; else NULL */
    int fd;                    /* file packs; -1 for memory packs */
    uint32_t count;
    uint64_t strings_off, strings_size, data_off, file_size;
};

/* ---- little-endian fields ---------------------------------------------- */

static uint32_t rd32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t rd64(const unsigned char *b)
{
    return (uint64_t)rd32(b) | (uint64_t)rd32(b + 4) << 32;
}

static uint64_t pad16(uint64_t n)
{
    return (PKR_ALIGN - n % PKR_ALIGN) % PKR_ALIGN;
}

static const unsigned char *rec(const pkr_pack *p, size_t i)
{
    return p->meta + PKR_HEADER_SIZE + (size_t)PKR_RECORD_SIZE * i;
}

static const char *rec_str(const pkr_pack *p, const unsigned char *r, int field)
{
    return (const char *)p->meta + p->strings_off + rd32(r + field);
}

/* ---- checksum ------------------------------------------------------------ */

static uint64_t fnv1a(uint64_t h, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t pkr_checksum(const void *meta, size_t data_offset)
{
    const unsigned char *b = meta;
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, b, CHECKSUM_AT);
    return data_offset > PKR_HEADER_SIZE
               ? fnv1a(h, b + PKR_HEADER_SIZE, data_offset - PKR_HEADER_SIZE)
               : h;
}

/* ---- validation ---------------------------------------------------------- */

/* `have` bytes of the file's start are at b. */
static int check_magic(const unsigned char *b, size_t have)
{
    if (memcmp(b, PKR_MAGIC, have < PKR_MAGIC_SIZE ? have : PKR_MAGIC_SIZE) != 0)
        return PKR_EMAGIC;
    return have < PKR_HEADER_SIZE ? PKR_ETRUNC : PKR_OK;
}

/* Header fields into p; `actual` is the real size of the pack. */
static int check_header(const unsigned char *h, uint64_t actual, pkr_pack *p)
{
    if (rd32(h + 8) != PKR_FORMAT_VERSION)
        return PKR_EVERSION;
    p->count = rd32(h + 12);
    p->strings_off = rd64(h + 24);
    p->strings_size = rd64(h + 32);
    p->data_off = rd64(h + 40);
    uint64_t data_size = rd64(h + 48);
    if (rd64(h + 16) != PKR_HEADER_SIZE ||
        p->strings_off != PKR_HEADER_SIZE + (uint64_t)PKR_RECORD_SIZE * p->count ||
        p->strings_size > UINT32_MAX)
        return PKR_EFORMAT;
    uint64_t strings_end = p->strings_off + p->strings_size;
    if (p->data_off != strings_end + pad16(strings_end) || data_size > UINT64_MAX - p->data_off)
        return PKR_EFORMAT;
    p->file_size = p->data_off + data_size;
    if (actual < p->file_size)
        return PKR_ETRUNC;
    return actual > p->file_size ? PKR_EFORMAT : PKR_OK;
}

/* A string that starts at *cursor of the table; advances past its NUL. */
static int check_string(const pkr_pack *p, const unsigned char *r, int field, uint64_t *cursor)
{
    uint32_t off = rd32(r + field), len = rd32(r + field + 4);
    if (off != *cursor || len == 0 || (uint64_t)len >= p->strings_size - off)
        return PKR_EFORMAT;
    const unsigned char *s = p->meta + p->strings_off + off;
    if (s[len] != 0 || memchr(s, 0, len) != NULL)
        return PKR_EFORMAT;
    *cursor += (uint64_t)len + 1;
    return PKR_OK;
}

/* The blob of record r starts at *cursor; advances past its padding. */
static int check_blob(const pkr_pack *p, const unsigned char *r, uint64_t *cursor)
{
    uint64_t size = rd64(r + REC_SIZE), room = p->file_size - *cursor;
    if (rd64(r + REC_DATA_OFF) != *cursor || size > room || pad16(size) > room - size)
        return PKR_EFORMAT;
    *cursor += size + pad16(size);
    return PKR_OK;
}

static int check_record(const pkr_pack *p, size_t i, uint64_t *str_cur, uint64_t *blob_cur)
{
    const unsigned char *r = rec(p, i);
    if (check_string(p, r, REC_ADDR_OFF, str_cur) || check_string(p, r, REC_ID_OFF, str_cur) ||
        check_blob(p, r, blob_cur) || rd32(r + REC_ID_ORDER) >= p->count)
        return PKR_EFORMAT;
    for (int k = REC_RESERVED; k < PKR_RECORD_SIZE; k++)
        if (r[k] != 0)
            return PKR_EFORMAT;
    if (i > 0 && strcmp(rec_str(p, rec(p, i - 1), REC_ADDR_OFF), rec_str(p, r, REC_ADDR_OFF)) >= 0)
        return PKR_EFORMAT;
    return PKR_OK;
}

/* Strictly increasing (asset id, index) along the id order: a permutation. */
static int check_id_order(const pkr_pack *p)
{
    for (size_t k = 1; k < p->count; k++) {
        uint32_t a = rd32(rec(p, k - 1) + REC_ID_ORDER), b = rd32(rec(p, k) + REC_ID_ORDER);
        int c = strcmp(rec_str(p, rec(p, a), REC_ID_OFF), rec_str(p, rec(p, b), REC_ID_OFF));
        if (c > 0 || (c == 0 && a >= b))
            return PKR_EFORMAT;
    }
    return PKR_OK;
}

/* Everything after the header: checksum, padding, records, id order. */
static int check_meta(const pkr_pack *p)
{
    if (pkr_checksum(p->meta, p->data_off) != rd64(p->meta + CHECKSUM_AT))
        return PKR_ECHECKSUM;
    for (uint64_t k = p->strings_off + p->strings_size; k < p->data_off; k++)
        if (p->meta[k] != 0)
            return PKR_EFORMAT;
    uint64_t str_cur = 0, blob_cur = p->data_off;
    for (size_t i = 0; i < p->count; i++)
        if (check_record(p, i, &str_cur, &blob_cur))
            return PKR_EFORMAT;
    if (str_cur != p->strings_size || blob_cur != p->file_size)
        return PKR_EFORMAT;
    return check_id_order(p);
}

/* ---- opening -------------------------------------------------------------- */

static pkr_pack *pack_new(void)
{
    pkr_pack *p = calloc(1, sizeof *p);
    if (p)
        p->fd = -1;
    return p;
}

int pkr_open_memory(const void *buf, size_t len, pkr_pack **out)
{
    if (!out)
        return PKR_EINVAL;
    *out = NULL;
    if (!buf && len)
        return PKR_EINVAL;
    int rc = buf ? check_magic(buf, len) : PKR_ETRUNC;
    pkr_pack *p = rc ? NULL : pack_new();
    if (rc == 0 && !p)
        rc = PKR_ENOMEM;
    if (rc == 0)
        rc = check_header(buf, len, p);
    if (rc == 0) {
        p->mem = buf;
        p->meta = buf;
        rc = check_meta(p);
    }
    if (rc) {
        free(p);
        return rc;
    }
    *out = p;
    return PKR_OK;
}

/* pread until len bytes or end of file; *got says how many. */
static int read_full(int fd, void *buf, size_t len, uint64_t pos, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t r = pread(fd, (unsigned char *)buf + *got, len - *got, (off_t)(pos + *got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return PKR_EIO;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return PKR_OK;
}

/* Header and metadata of the open file p->fd. */
static int load_file(pkr_pack *p)
{
    struct stat st;
    unsigned char h[PKR_HEADER_SIZE];
    size_t got;
    if (fstat(p->fd, &st) < 0 || read_full(p->fd, h, sizeof h, 0, &got))
        return PKR_EIO;
    int rc = check_magic(h, got);
    if (rc == 0)
        rc = check_header(h, (uint64_t)st.st_size, p);
    if (rc)
        return rc;
    if (p->data_off > SIZE_MAX || !(p->owned = malloc((size_t)p->data_off)))
        return PKR_ENOMEM;
    if (read_full(p->fd, p->owned, (size_t)p->data_off, 0, &got))
        return PKR_EIO;
    if (got < p->data_off)
        return PKR_ETRUNC; /* shrank under us */
    p->meta = p->owned;
    return check_meta(p);
}

int pkr_open(const char *path, pkr_pack **out)
{
    if (!out)
        return PKR_EINVAL;
    *out = NULL;
    if (!path)
        return PKR_EINVAL;
    pkr_pack *p = pack_new();
    if (!p)
        return PKR_ENOMEM;
    p->fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = p->fd < 0 ? PKR_EIO : load_file(p);
    if (rc) {
        int e = errno;
        pkr_close(p);
        errno = e;
        return rc;
    }
    *out = p;
    return PKR_OK;
}

void pkr_close(pkr_pack *p)
{
    if (!p)
        return;
    if (p->fd >= 0)
        close(p->fd);
    free(p->owned);
    free(p);
}

/* ---- entries ---------------------------------------------------------------- */

size_t pkr_count(const pkr_pack *p)
{
    return p ? p->count : 0;
}

int pkr_entry(const pkr_pack *p, size_t i, pkr_info *out)
{
    if (!p || !out || i >= p->count)
        return PKR_EINVAL;
    const unsigned char *r = rec(p, i);
    out->address = rec_str(p, r, REC_ADDR_OFF);
    out->address_len = rd32(r + REC_ADDR_LEN);
    out->asset_id = rec_str(p, r, REC_ID_OFF);
    out->asset_id_len = rd32(r + REC_ID_LEN);
    out->offset = rd64(r + REC_DATA_OFF);
    out->size = rd64(r + REC_SIZE);
    memcpy(out->hash, r + REC_HASH, PKR_HASH_SIZE);
    return PKR_OK;
}

int pkr_find_address(const pkr_pack *p, const char *address, size_t *index)
{
    if (!p || !address || !index)
        return PKR_EINVAL;
    size_t lo = 0, hi = p->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(rec_str(p, rec(p, mid), REC_ADDR_OFF), address);
        if (c == 0) {
            *index = mid;
            return PKR_OK;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return PKR_ENOTFOUND;
}

static const char *id_at_rank(const pkr_pack *p, size_t k)
{
    return rec_str(p, rec(p, rd32(rec(p, k) + REC_ID_ORDER)), REC_ID_OFF);
}

int pkr_find_id(const pkr_pack *p, const char *asset_id, size_t *index)
{
    if (!p || !asset_id || !index)
        return PKR_EINVAL;
    size_t lo = 0, hi = p->count; /* first rank whose id is >= asset_id */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(id_at_rank(p, mid), asset_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == p->count || strcmp(id_at_rank(p, lo), asset_id) != 0)
        return PKR_ENOTFOUND;
    *index = rd32(rec(p, lo) + REC_ID_ORDER);
    return PKR_OK;
}

/* ---- blob bytes ---------------------------------------------------------------- */

int pkr_read_at(const pkr_pack *p, size_t i, uint64_t offset, void *buf, size_t len, size_t *got)
{
    if (got)
        *got = 0;
    if (!p || !got || i >= p->count || (!buf && len))
        return PKR_EINVAL;
    const unsigned char *r = rec(p, i);
    uint64_t size = rd64(r + REC_SIZE), pos = rd64(r + REC_DATA_OFF) + offset;
    if (offset > size)
        return PKR_EINVAL;
    size_t n = size - offset < len ? (size_t)(size - offset) : len;
    if (n == 0)
        return PKR_OK;
    if (p->mem) {
        memcpy(buf, p->mem + pos, n);
        *got = n;
        return PKR_OK;
    }
    int rc = read_full(p->fd, buf, n, pos, got);
    return rc ? rc : *got < n ? PKR_ETRUNC : PKR_OK;
}

int pkr_read(const pkr_pack *p, size_t i, void *buf, size_t cap, size_t *len)
{
    if (!p || !len || i >= p->count)
        return PKR_EINVAL;
    uint64_t size = rd64(rec(p, i) + REC_SIZE);
    if (size > SIZE_MAX) {
        *len = SIZE_MAX;
        return PKR_ERANGE;
    }
    *len = (size_t)size;
    if (size > cap)
        return PKR_ERANGE;
    size_t got;
    return pkr_read_at(p, i, 0, buf, (size_t)size, &got);
}

int pkr_data(const pkr_pack *p, size_t i, const void **data)
{
    if (!p || !data || i >= p->count || !p->mem)
        return PKR_EINVAL;
    *data = p->mem + rd64(rec(p, i) + REC_DATA_OFF);
    return PKR_OK;
}

/* Feed blob i of a file pack through h in VERIFY_CHUNK pieces. */
static int hash_from_file(const pkr_pack *p, size_t i, const pkr_hasher *h, void *st)
{
    uint64_t size = rd64(rec(p, i) + REC_SIZE), done = 0;
    size_t cap = size < VERIFY_CHUNK ? (size_t)size + 1 : VERIFY_CHUNK;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return PKR_ENOMEM;
    int rc = PKR_OK;
    while (rc == PKR_OK && done < size) {
        size_t got;
        rc = pkr_read_at(p, i, done, buf, cap, &got);
        if (rc == PKR_OK)
            h->update(st, buf, got);
        done += got;
    }
    free(buf);
    return rc;
}

int pkr_verify(const pkr_pack *p, size_t i, const pkr_hasher *h)
{
    if (!p || !h || !h->begin || !h->update || !h->end || i >= p->count)
        return PKR_EINVAL;
    const unsigned char *r = rec(p, i);
    void *st = h->begin(h->ud);
    if (!st)
        return PKR_ENOMEM;
    int rc = PKR_OK;
    if (p->mem)
        h->update(st, p->mem + rd64(r + REC_DATA_OFF), (size_t)rd64(r + REC_SIZE));
    else
        rc = hash_from_file(p, i, h, st);
    unsigned char digest[PKR_HASH_SIZE];
    h->end(st, digest);
    if (rc)
        return rc;
    return memcmp(digest, r + REC_HASH, PKR_HASH_SIZE) == 0 ? PKR_OK : PKR_EHASH;
}

const char *pkr_strerror(int err)
{
    switch (err) {
    case PKR_OK:
        return "ok";
    case PKR_EINVAL:
        return "invalid argument";
    case PKR_ENOMEM:
        return "out of memory";
    case PKR_EIO:
        return "cannot read the pack file";
    case PKR_EMAGIC:
        return "not a pack";
    case PKR_EVERSION:
        return "unsupported pack format version";
    case PKR_ETRUNC:
        return "truncated pack";
    case PKR_ECHECKSUM:
        return "damaged pack (metadata checksum mismatch)";
    case PKR_EFORMAT:
        return "malformed pack";
    case PKR_ENOTFOUND:
        return "no such entry";
    case PKR_EHASH:
        return "blob does not match its content hash";
    case PKR_ERANGE:
        return "buffer too small for the blob";
    }
    return "unknown error";
}
