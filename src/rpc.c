/*
 * rpc.c - Content-Length framing for packer serve: reading frames from an
 * untrusted byte stream and writing them to a pipe.
 *
 * Invariants: memory is bounded whatever the input: a header line is at
 * most RPC_MAX_LINE bytes (longer ones are an error and are skipped, not
 * stored), a header block at most RPC_MAX_HEADERS lines, and a body is
 * allocated as its bytes arrive (never from the claimed length alone), up
 * to RPC_MAX_BODY. After a malformed frame the reader resynchronizes on the
 * next "Content-Length:" it sees, also in the middle of a line (a body has
 * no trailing newline, so the next header follows it directly). It cannot
 * recover from a Content-Length that is well formed but wrong: a short one
 * leaves the rest of the body to be read as headers (an error, then
 * resynchronized); a long one swallows the start of the next frame.
 *
 * Threads: a reader belongs to one thread; rpc_write_frame is reentrant
 * but needs one writer per fd at a time (serve.c holds its writer mutex).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "internal.h"
#include "rpc.h"

#define BUF_SIZE 65536

struct rpc_reader {
    rpc_read_fn fn;
    void *ctx;
    char buf[BUF_SIZE];
    size_t pos, end;
    bool eof, io_error;
    bool resync; /* skipping input until a Content-Length header */
    char line[RPC_MAX_LINE + 1];
    size_t pending; /* line[0..pending) is a header line still to handle */
};

rpc_reader *rpc_reader_new(rpc_read_fn fn, void *ctx)
{
    rpc_reader *r = pk_calloc(1, sizeof *r);
    if (r) {
        r->fn = fn;
        r->ctx = ctx;
    }
    return r;
}

void rpc_reader_free(rpc_reader *r)
{
    pk_free(r);
}

static bool fill(rpc_reader *r)
{
    if (r->pos < r->end)
        return true;
    if (r->eof || r->io_error)
        return false;
    ssize_t n = r->fn(r->ctx, r->buf, sizeof r->buf);
    if (n <= 0) {
        r->eof = n == 0;
        r->io_error = n < 0;
        return false;
    }
    r->pos = 0;
    r->end = (size_t)n;
    return true;
}

/* One line into r->line without its end (LF or CRLF). 1: a line, 0: end
 * of input before any byte, -1: the line was longer than RPC_MAX_LINE
 * (skipped to its end). A last line without LF counts as a line. */
static int read_line(rpc_reader *r, size_t *len)
{
    size_t n = 0;
    bool any = false, too_long = false;
    while (fill(r)) {
        any = true;
        char *start = r->buf + r->pos;
        char *nl = memchr(start, '\n', r->end - r->pos);
        size_t chunk = nl ? (size_t)(nl - start) : r->end - r->pos;
        if (!too_long && n + chunk <= RPC_MAX_LINE) {
            memcpy(r->line + n, start, chunk);
            n += chunk;
        } else {
            too_long = true;
        }
        r->pos += chunk + (nl ? 1 : 0);
        if (nl)
            break;
    }
    if (!any)
        return 0;
    if (too_long)
        return -1;
    if (n && r->line[n - 1] == '\r')
        n--;
    r->line[n] = '\0';
    *len = n;
    return 1;
}

static const char CL[] = "content-length:";

/* Where "Content-Length:" starts in line (case-insensitive), or NULL. */
static char *find_cl(char *line, size_t len)
{
    for (size_t i = 0; i + sizeof CL - 1 <= len; i++)
        if (strncasecmp(line + i, CL, sizeof CL - 1) == 0)
            return line + i;
    return NULL;
}

/* A header name is an RFC 7230 token. */
static bool token_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("!#$%&'*+-.^_`|~", s[i])))
            return false;
    return true;
}

/* Decimal digits only (surrounding blanks allowed), at most RPC_MAX_BODY
 * + 1 (enough to say "too big"). */
static bool parse_length(const char *v, size_t *out)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v < '0' || *v > '9')
        return false;
    size_t n = 0;
    for (; *v >= '0' && *v <= '9'; v++) {
        n = n * 10 + (size_t)(*v - '0');
        if (n > (size_t)RPC_MAX_BODY + 1)
            n = (size_t)RPC_MAX_BODY + 1;
    }
    while (*v == ' ' || *v == '\t')
        v++;
    *out = n;
    return *v == '\0';
}

/* A bad frame: report it and resynchronize. When the offending line holds
 * a Content-Length further on, the next frame starts there. */
static int bad(rpc_reader *r, char *err, size_t errlen, size_t linelen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int bad(rpc_reader *r, char *err, size_t errlen, size_t linelen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    r->resync = true;
    r->pending = 0;
    char *cl = linelen ? find_cl(r->line + 1, linelen - 1) : NULL;
    if (cl) {
        size_t n = linelen - (size_t)(cl - r->line);
        memmove(r->line, cl, n);
        r->line[n] = '\0';
        r->pending = n;
        r->resync = false;
    }
    return RPC_BAD;
}

static int read_body(rpc_reader *r, size_t len, char **body)
{
    size_t cap = len < BUF_SIZE ? len : BUF_SIZE, n = 0;
    char *b = pk_malloc(cap + 1);
    if (!b)
        return RPC_IO;
    while (n < len) {
        if (!fill(r)) {
            pk_free(b);
            return r->io_error ? RPC_IO : RPC_EOF;
        }
        size_t chunk = r->end - r->pos;
        if (chunk > len - n)
            chunk = len - n;
        if (n + chunk > cap) { /* grow as the bytes arrive, not as claimed */
            size_t ncap = cap * 2 > len ? len : cap * 2;
            if (ncap < n + chunk)
                ncap = n + chunk;
            char *nb = pk_realloc(b, ncap + 1);
            if (!nb) {
                pk_free(b);
                return RPC_IO;
            }
            b = nb;
            cap = ncap;
        }
        memcpy(b + n, r->buf + r->pos, chunk);
        n += chunk;
        r->pos += chunk;
    }
    b[n] = '\0';
    *body = b;
    return RPC_FRAME;
}

int rpc_next(rpc_reader *r, char **body, size_t *len, char *err, size_t errlen)
{
    *body = NULL;
    *len = 0;
    err[0] = '\0';
    size_t length = 0, lines = 0;
    bool have_length = false;
    for (;;) {
        size_t n = 0;
        int got;
        if (r->pending) {
            n = r->pending;
            r->pending = 0;
            got = 1;
        } else {
            got = read_line(r, &n);
        }
        if (got == 0)
            return r->io_error ? RPC_IO : RPC_EOF;
        if (r->resync) {
            char *cl = got > 0 ? find_cl(r->line, n) : NULL;
            if (!cl)
                continue;
            n -= (size_t)(cl - r->line);
            memmove(r->line, cl, n + 1);
            r->resync = false;
        }
        if (got < 0)
            return bad(r, err, errlen, 0, "header line longer than %d bytes", RPC_MAX_LINE);
        if (n == 0) {
            if (lines == 0)
                continue; /* blank lines between frames are harmless */
            break;
        }
        if (++lines > RPC_MAX_HEADERS)
            return bad(r, err, errlen, 0, "more than %d header lines", RPC_MAX_HEADERS);
        char *colon = memchr(r->line, ':', n);
        if (!colon || !token_ok(r->line, (size_t)(colon - r->line)))
            return bad(r, err, errlen, n, "malformed header line (expected \"Name: value\")");
        if ((size_t)(colon - r->line) + 1 != sizeof CL - 1 ||
            strncasecmp(r->line, CL, sizeof CL - 1) != 0)
            continue; /* Content-Type and the like */
        size_t v;
        if (!parse_length(colon + 1, &v) || (have_length && v != length))
            return bad(r, err, errlen, 0, "Content-Length must be one non-negative integer");
        length = v;
        have_length = true;
    }
    if (!have_length)
        return bad(r, err, errlen, 0, "header block without Content-Length");
    if (length > RPC_MAX_BODY)
        return bad(r, err, errlen, 0, "Content-Length over the %u MiB limit", RPC_MAX_BODY >> 20);
    int rc = read_body(r, length, body);
    if (rc == RPC_FRAME)
        *len = length;
    return rc;
}

/* Wait until fd takes bytes; false once *abort is set or poll fails. */
static bool wait_writable(int fd, const atomic_bool *abort)
{
    for (;;) {
        if (abort && atomic_load(abort))
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, 100);
        if (n > 0)
            return true; /* POLLERR/POLLHUP: write() tells EPIPE */
        if (n < 0 && errno != EINTR)
            return false;
    }
}

int rpc_write_frame(int fd, const char *body, size_t len, const atomic_bool *abort)
{
    char head[64];
    int hn = snprintf(head, sizeof head, "Content-Length: %zu\r\n\r\n", len);
    const char *parts[2] = {head, body};
    size_t sizes[2] = {(size_t)hn, len};
    for (int k = 0; k < 2; k++) {
        size_t off = 0;
        while (off < sizes[k]) {
            if (!wait_writable(fd, abort))
                return abort && atomic_load(abort) ? -ECANCELED : -EIO;
            /* at most PIPE_BUF after POLLOUT: a pipe write that cannot block */
            size_t chunk = sizes[k] - off > 4096 ? 4096 : sizes[k] - off;
            ssize_t w = write(fd, parts[k] + off, chunk);
            if (w < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (w < 0)
                return -errno;
            off += (size_t)w;
        }
    }
    return 0;
}
