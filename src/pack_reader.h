/*
 * pack_reader.h - read packer packs (docs/pack-format.md, version 1).
 *
 * A standalone pair of files (this header and pack_reader.c) that a game
 * runtime can embed as they are: C11, libc and POSIX file I/O (open,
 * pread, fstat, close) only; pkr_open_memory() needs ISO C alone. No
 * packer headers, no cJSON, no xxHash. libpacker carries the same pair
 * (its pack writer, src/pack.c, takes the format constants from here).
 *
 * Invariants: pkr_open() and pkr_open_memory() check everything the
 * format defines before they return a handle (bounds, the metadata
 * checksum, canonical offsets, sorted unique addresses, the asset id
 * order); after that no call on the handle reads outside the pack, on any
 * input. Blob bytes are not read at open; pkr_verify() checks them against
 * their content hash on demand.
 *
 * Errors are negative PKR_E* codes, 0 is success; pkr_strerror() names
 * them. Results come back through out-parameters.
 *
 * Threads: a handle is immutable once open. Every function may be called
 * from any thread, concurrently on the same handle (file reads use
 * pread), except pkr_close(), which must not race with other calls on the
 * handle.
 *
 * Content hashes: the format stores the XXH3-128 of each blob (canonical,
 * big-endian). This reader does not implement XXH3 (it would be a copy of
 * xxHash); pkr_verify() takes the hash function from the caller as a
 * streaming pkr_hasher. With libxxhash, begin = XXH3_createState +
 * XXH3_128bits_reset, update = XXH3_128bits_update, end =
 * XXH128_canonicalFromHash(XXH3_128bits_digest) + XXH3_freeState.
 */
#ifndef PACK_READER_H
#define PACK_READER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the format (docs/pack-format.md) ------------------------------------ */

#define PKR_FORMAT_VERSION 1
#define PKR_MAGIC "PKPACK\0\1" /* 8 bytes, the NUL and \1 included */
#define PKR_MAGIC_SIZE 8
#define PKR_HEADER_SIZE 64
#define PKR_RECORD_SIZE 64
#define PKR_ALIGN 16
#define PKR_HASH_SIZE 16

/* ---- errors ---------------------------------------------------------------- */

enum {
    PKR_OK = 0,
    PKR_EINVAL = -1,    /* bad argument: NULL, index out of range, offset past the blob */
    PKR_ENOMEM = -2,    /* out of memory */
    PKR_EIO = -3,       /* the file cannot be opened or read; errno says why */
    PKR_EMAGIC = -4,    /* not a pack */
    PKR_EVERSION = -5,  /* a pack of a format version this reader does not know */
    PKR_ETRUNC = -6,    /* shorter than its header says (truncated) */
    PKR_ECHECKSUM = -7, /* header, index or strings damaged (checksum mismatch) */
    PKR_EFORMAT = -8,   /* malformed: a field breaks the format's rules */
    PKR_ENOTFOUND = -9, /* no entry with that address or asset id */
    PKR_EHASH = -10,    /* blob bytes do not match their content hash */
    PKR_ERANGE = -11    /* buffer too small for the blob */
};

/* Static lowercase message for an error code ("malformed pack"). */
const char *pkr_strerror(int err);

/* ---- opening --------------------------------------------------------------- */

typedef struct pkr_pack pkr_pack;

/* Open the pack file at `path`: reads and validates its header, index and
 * string table (blobs stay on disk, read on demand; the file stays open
 * until pkr_close). Errors: PKR_EIO (errno set by the failing call),
 * PKR_EMAGIC, PKR_EVERSION, PKR_ETRUNC, PKR_ECHECKSUM, PKR_EFORMAT,
 * PKR_ENOMEM, PKR_EINVAL (NULL argument). On error *out is NULL. */
int pkr_open(const char *path, pkr_pack **out);

/* Open a pack held in memory, without copying: buf must stay valid and
 * unchanged until pkr_close. Same validation and errors as pkr_open. */
int pkr_open_memory(const void *buf, size_t len, pkr_pack **out);

/* Release the pack (closes its file). Accepts NULL. */
void pkr_close(pkr_pack *p);

/* ---- entries --------------------------------------------------------------- */

typedef struct {
    const char *address;  /* NUL-terminated, owned by the pack */
    size_t address_len;   /* bytes, without the NUL */
    const char *asset_id; /* NUL-terminated, owned by the pack */
    size_t asset_id_len;
    uint64_t offset;                   /* of the blob in the pack file */
    uint64_t size;                     /* of the blob, bytes */
    unsigned char hash[PKR_HASH_SIZE]; /* XXH3-128 of the blob, canonical */
} pkr_info;

/* Number of entries; entries are indexed 0..count-1 in address order. */
size_t pkr_count(const pkr_pack *p);

/* Entry i. Its strings live as long as the pack (for a memory pack, they
 * point into the caller's buffer). PKR_EINVAL when i is out of range. */
int pkr_entry(const pkr_pack *p, size_t i, pkr_info *out);

/* Index of the entry with this address (binary search, bytewise order).
 * PKR_ENOTFOUND when there is none. */
int pkr_find_address(const pkr_pack *p, const char *address, size_t *index);

/* Index of an entry with this asset id (binary search over the id order).
 * Ids need not be unique: answers the lowest index among them.
 * PKR_ENOTFOUND when there is none. */
int pkr_find_id(const pkr_pack *p, const char *asset_id, size_t *index);

/* ---- blob bytes ------------------------------------------------------------ */

/* Copy up to len bytes of blob i, starting `offset` bytes into the blob,
 * into buf; *got says how many (less than len only at the blob's end, 0
 * at offset == size). For streaming large blobs in bounded memory.
 * Errors: PKR_EINVAL (offset past the blob, NULL), PKR_EIO, PKR_ETRUNC
 * (the file shrank since it was opened). */
int pkr_read_at(const pkr_pack *p, size_t i, uint64_t offset, void *buf, size_t len, size_t *got);

/* Copy the whole of blob i into buf (cap bytes); *len is its size. When
 * the blob does not fit: PKR_ERANGE, nothing copied, *len still set. */
int pkr_read(const pkr_pack *p, size_t i, void *buf, size_t cap, size_t *len);

/* Zero-copy pointer to blob i of a memory pack (pkr_open_memory); valid
 * while the caller's buffer is. PKR_EINVAL for a pack opened from a file. */
int pkr_data(const pkr_pack *p, size_t i, const void **data);

/* A streaming hash function supplied by the caller: begin(ud) makes a
 * fresh state (NULL when out of memory); update(state, ...) feeds bytes;
 * end(state, out) writes the 16-byte canonical digest and releases the
 * state. pkr_verify calls end exactly once for every state it began. */
typedef struct {
    void *(*begin)(void *ud);
    void (*update)(void *state, const void *buf, size_t len);
    void (*end)(void *state, unsigned char out[PKR_HASH_SIZE]);
    void *ud;
} pkr_hasher;

/* Hash blob i with h and compare with its recorded content hash. File
 * packs are streamed through a 64 KiB buffer. Errors: PKR_EHASH
 * (mismatch), PKR_EIO, PKR_ETRUNC, PKR_ENOMEM, PKR_EINVAL. */
int pkr_verify(const pkr_pack *p, size_t i, const pkr_hasher *h);

/* ---- for writers and tests ------------------------------------------------- */

/* The metadata checksum of a pack whose first `data_offset` bytes (header,
 * index, strings, padding; data_offset >= PKR_HEADER_SIZE) are at `meta`:
 * FNV-1a 64 of bytes 0..55 and 64..data_offset-1. Writers store it at byte
 * 56; tests use it to re-seal packs they damage on purpose. */
uint64_t pkr_checksum(const void *meta, size_t data_offset);

#ifdef __cplusplus
}
#endif
#endif /* PACK_READER_H */
