/*
 * rpc.h - Content-Length framing for packer serve (rpc.c); internal.
 *
 * The framing language servers use: a header block of "Name: value" lines
 * ended by an empty line (CRLF, bare LF accepted), then exactly
 * Content-Length bytes of body. Other headers (Content-Type) are accepted
 * and ignored.
 */
#ifndef PACKER_RPC_H
#define PACKER_RPC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define RPC_MAX_BODY (64u << 20) /* a larger Content-Length is refused unread */
#define RPC_MAX_LINE 8192        /* one header line */
#define RPC_MAX_HEADERS 64       /* lines in one header block */

/* Where bytes come from: like read(2); 0 at end of input, < 0 on error. */
typedef ssize_t (*rpc_read_fn)(void *ctx, void *buf, size_t n);
typedef struct rpc_reader rpc_reader;

enum {
    RPC_FRAME = 0, /* a body */
    RPC_EOF,       /* end of input (also in the middle of a frame) */
    RPC_BAD,       /* a malformed frame: skipped up to the next header */
    RPC_IO         /* the read function failed */
};

/* NULL when out of memory. */
rpc_reader *rpc_reader_new(rpc_read_fn fn, void *ctx);
void rpc_reader_free(rpc_reader *r);
/* The next frame. RPC_FRAME: *body (NUL-terminated, caller frees with
 * pk_free) holds *len bytes. RPC_BAD: err says why (a bad header line, a
 * missing or malformed Content-Length, a body over RPC_MAX_BODY); the
 * reader then skips input until a "Content-Length:" header, so the next
 * call returns the next well-formed frame. */
int rpc_next(rpc_reader *r, char **body, size_t *len, char *err, size_t errlen);

/* Write one frame (header and body) to fd. Waits for the fd in 100 ms
 * steps and gives up (-ECANCELED) once *abort is set (may be NULL), so a
 * client that stops reading cannot hold a writer forever. 0 or -errno
 * (-EPIPE when the reader is gone). One writer per fd at a time. */
int rpc_write_frame(int fd, const char *body, size_t len, const atomic_bool *abort);

#endif
