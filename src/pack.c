/*
 * pack.c - the pack writer: a set of (address, asset id, blob) entries
 * becomes one pack file (docs/pack-format.md). The format constants and
 * the metadata checksum come from pack_reader.h, the reader that ships
 * beside this writer.
 *
 * Invariants: the bytes depend only on the entry set: entries sorted by
 * address, every offset computed, zero padding, no timestamps or paths.
 * The file appears complete or not at all (io_out_*: temp file, fsync,
 * rename, fsync dir); a blob whose bytes do not hash to its entry's hash
 * aborts the write before the rename. Memory is bounded by the metadata
 * (64 bytes per entry plus the strings) and one 1 MiB copy buffer,
 * whatever the blob sizes.
 *
 * Threads: any; no state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pack_reader.h"

#define COPY_BUF (1024 * 1024)

/* Offsets of the pack being written (docs/pack-format.md, "Layout"). */
typedef struct {
    uint64_t strings_off, strings_size, data_off, file_size;
} layout;

/* Buffered output: blob bytes are read straight into buf. */
typedef struct {
    io_out *out;
    unsigned char *buf;
    size_t used;
} sink;

static void wr32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *b, uint64_t v)
{
    wr32(b, (uint32_t)v);
    wr32(b + 4, (uint32_t)(v >> 32));
}

static uint64_t pad16(uint64_t n)
{
    return (PKR_ALIGN - n % PKR_ALIGN) % PKR_ALIGN;
}

/* ---- the entry set ------------------------------------------------------- */

static int cmp_address(const void *a, const void *b)
{
    return strcmp(((const pack_entry *)a)->address, ((const pack_entry *)b)->address);
}

static int check_entry(const pack_entry *e)
{
    if (!e->address || !*e->address || strlen(e->address) >= UINT32_MAX)
        return pk_err(PACKER_EINVAL, "pack entry: address must be a non-empty string");
    if (!e->asset_id || !*e->asset_id || strlen(e->asset_id) >= UINT32_MAX)
        return pk_err(PACKER_EINVAL, "pack entry %s: asset id must be a non-empty string",
                      e->address);
    if (e->size > 0 && !e->blob_path)
        return pk_err(PACKER_EINVAL, "pack entry %s: no blob file", e->address);
    if (e->blob_offset > INT64_MAX || e->size > (uint64_t)INT64_MAX - e->blob_offset)
        return pk_err(PACKER_EINVAL, "pack entry %s: blob offset and size out of range",
                      e->address);
    return 0;
}

/* Validate, sort by address, refuse duplicates. */
static int sort_entries(pack_entry *e, size_t n)
{
    if (n > UINT32_MAX)
        return pk_err(PACKER_EINVAL, "pack: %zu entries, at most %u fit", n, UINT32_MAX);
    for (size_t i = 0; i < n; i++) {
        int rc = check_entry(&e[i]);
        if (rc)
            return rc;
    }
    if (n > 1)
        qsort(e, n, sizeof *e, cmp_address);
    for (size_t i = 1; i < n; i++)
        if (strcmp(e[i - 1].address, e[i].address) == 0)
            return pk_err(PACKER_EINVAL, "pack: duplicate address %s", e[i].address);
    return 0;
}

typedef struct {
    const char *id;
    uint32_t index;
} id_rank;

static int cmp_rank(const void *a, const void *b)
{
    const id_rank *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* The id order: entry indexes sorted by (asset id, index). */
static int id_order(const pack_entry *e, size_t n, id_rank **out)
{
    *out = pk_calloc(n, sizeof **out);
    if (!*out)
        return pk_err(PACKER_ENOMEM, "pack: out of memory");
    for (size_t i = 0; i < n; i++)
        (*out)[i] = (id_rank){e[i].asset_id, (uint32_t)i};
    if (n > 1)
        qsort(*out, n, sizeof **out, cmp_rank);
    return 0;
}

/* ---- metadata: header, index, strings ------------------------------------ */

static int plan(const pack_entry *e, size_t n, layout *lay)
{
    uint64_t strings = 0;
    for (size_t i = 0; i < n; i++)
        strings += strlen(e[i].address) + strlen(e[i].asset_id) + 2;
    if (strings > UINT32_MAX)
        return pk_err(PACKER_EINVAL, "pack: addresses and asset ids exceed 4 GiB");
    lay->strings_off = PKR_HEADER_SIZE + (uint64_t)PKR_RECORD_SIZE * n;
    lay->strings_size = strings;
    uint64_t end = lay->strings_off + strings;
    lay->data_off = end + pad16(end);
    uint64_t cur = lay->data_off;
    for (size_t i = 0; i < n; i++) {
        if (cur > INT64_MAX - PKR_ALIGN || e[i].size > (uint64_t)INT64_MAX - PKR_ALIGN - cur)
            return pk_err(PACKER_EINVAL, "pack: blobs exceed the largest file size");
        cur += e[i].size + pad16(e[i].size);
    }
    lay->file_size = cur;
    if (lay->data_off > SIZE_MAX)
        return pk_err(PACKER_ENOMEM, "pack: index too large for memory");
    return 0;
}

static void put_header(unsigned char *m, size_t n, const layout *lay)
{
    memcpy(m, PKR_MAGIC, PKR_MAGIC_SIZE);
    wr32(m + 8, PKR_FORMAT_VERSION);
    wr32(m + 12, (uint32_t)n);
    wr64(m + 16, PKR_HEADER_SIZE);
    wr64(m + 24, lay->strings_off);
    wr64(m + 32, lay->strings_size);
    wr64(m + 40, lay->data_off);
    wr64(m + 48, lay->file_size - lay->data_off);
}

/* Append s and its NUL at *cur of the string table; its offset, length. */
static void put_string(unsigned char *m, const layout *lay, unsigned char *field, const char *s,
                       uint32_t *cur)
{
    size_t len = strlen(s);
    memcpy(m + lay->strings_off + *cur, s, len + 1);
    wr32(field, *cur);
    wr32(field + 4, (uint32_t)len);
    *cur += (uint32_t)len + 1;
}

/* Header, index, strings and padding (zeroed) of the pack; caller frees. */
static int build_meta(const pack_entry *e, size_t n, const layout *lay, unsigned char **out)
{
    id_rank *order;
    int rc = id_order(e, n, &order);
    unsigned char *m = rc ? NULL : pk_calloc(1, (size_t)lay->data_off);
    if (rc == 0 && !m)
        rc = pk_err(PACKER_ENOMEM, "pack: out of memory");
    if (rc) {
        pk_free(order);
        return rc;
    }
    put_header(m, n, lay);
    uint32_t str_cur = 0;
    uint64_t blob_cur = lay->data_off;
    for (size_t i = 0; i < n; i++) {
        unsigned char *r = m + PKR_HEADER_SIZE + (size_t)PKR_RECORD_SIZE * i;
        put_string(m, lay, r + 0, e[i].address, &str_cur);
        put_string(m, lay, r + 8, e[i].asset_id, &str_cur);
        wr64(r + 16, blob_cur);
        wr64(r + 24, e[i].size);
        memcpy(r + 32, e[i].hash, PKR_HASH_SIZE);
        wr32(r + 48, order[i].index);
        blob_cur += e[i].size + pad16(e[i].size);
    }
    pk_free(order);
    wr64(m + 56, pkr_checksum(m, (size_t)lay->data_off));
    *out = m;
    return 0;
}

/* ---- blobs ------------------------------------------------------------------- */

static int sink_flush(sink *s)
{
    int rc = s->used ? io_out_write(s->out, s->buf, s->used) : 0;
    s->used = 0;
    return rc;
}

static int sink_zeros(sink *s, size_t n)
{
    if (COPY_BUF - s->used < n) {
        int rc = sink_flush(s);
        if (rc)
            return rc;
    }
    memset(s->buf + s->used, 0, n);
    s->used += n;
    return 0;
}

static int blob_errno(const pack_entry *e, const char *what)
{
    return pk_err(PACKER_EIO, "pack entry %s: %s %s: %s", e->address, what, e->blob_path,
                  strerror(errno));
}

/* Read e's bytes from fd into the sink, feeding h. */
static int copy_bytes(sink *s, const pack_entry *e, int fd, hash_stream *h)
{
    uint64_t done = 0;
    while (done < e->size) {
        if (s->used == COPY_BUF) {
            int rc = sink_flush(s);
            if (rc)
                return rc;
        }
        size_t room = COPY_BUF - s->used;
        size_t want = e->size - done < room ? (size_t)(e->size - done) : room;
        ssize_t r = pread(fd, s->buf + s->used, want, (off_t)(e->blob_offset + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return blob_errno(e, "cannot read");
        if (r == 0)
            return pk_err(PACKER_EIO, "pack entry %s: %s ends %llu bytes into the blob, not %llu",
                          e->address, e->blob_path, (unsigned long long)done,
                          (unsigned long long)e->size);
        hash_stream_update(h, s->buf + s->used, (size_t)r);
        s->used += (size_t)r;
        done += (uint64_t)r;
    }
    return 0;
}

/* Copy e's blob and its padding, checking its bytes against e->hash. */
static int copy_blob(sink *s, const pack_entry *e)
{
    int fd = -1;
    if (e->size > 0 && (fd = open(e->blob_path, O_RDONLY | O_CLOEXEC)) < 0)
        return blob_errno(e, "cannot open");
    hash_stream *h = hash_stream_new();
    int rc = h ? copy_bytes(s, e, fd, h) : pk_err(PACKER_ENOMEM, "pack: out of memory");
    if (fd >= 0)
        close(fd);
    unsigned char got[16] = {0};
    if (h)
        hash_stream_end(h, got);
    if (rc == 0 && memcmp(got, e->hash, sizeof got) != 0)
        rc = pk_err(PACKER_EIO, "pack entry %s: the bytes of %s do not match the blob's hash",
                    e->address, e->size ? e->blob_path : "(empty blob)");
    return rc ? rc : sink_zeros(s, (size_t)pad16(e->size));
}

/* ---- the pack ---------------------------------------------------------------- */

static int write_body(io_out *o, const pack_entry *e, size_t n, const layout *lay)
{
    unsigned char *meta;
    int rc = build_meta(e, n, lay, &meta);
    if (rc)
        return rc;
    rc = io_out_write(o, meta, (size_t)lay->data_off);
    pk_free(meta);
    sink s = {o, rc ? NULL : pk_malloc(COPY_BUF), 0};
    if (rc == 0 && !s.buf)
        rc = pk_err(PACKER_ENOMEM, "pack: out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = copy_blob(&s, &e[i]);
    if (rc == 0)
        rc = sink_flush(&s);
    pk_free(s.buf);
    return rc;
}

int pack_write(const char *path, pack_entry *entries, size_t n)
{
    if (!path || (n && !entries))
        return pk_err(PACKER_EINVAL, "pack_write: no path or no entries");
    layout lay = {0};
    int rc = sort_entries(entries, n);
    if (rc == 0)
        rc = plan(entries, n, &lay);
    io_out *o = NULL;
    if (rc == 0)
        rc = io_out_begin(path, &o);
    if (rc == 0)
        rc = write_body(o, entries, n, &lay);
    if (rc) {
        io_out_abort(o);
        return rc;
    }
    return io_out_commit(o);
}
