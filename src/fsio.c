/*
 * fsio.c - file I/O, and the one durable-write path of libpacker.
 *
 * io_write_atomic() is how every packer-owned file changes: a temp file in
 * the same directory, write, fsync, rename over the target, fsync the
 * directory. A crash at any instant leaves the old file or the new one.
 * io_out_* is the same path for files written in pieces (packs), and
 * io_write_atomic is built on it.
 * Writes, fsyncs and renames pass the fault-injection hook (alloc.c) so
 * tests can fail each of them in turn.
 *
 * Threads: any; nothing here keeps state but a temp-name counter.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static atomic_ulong tmp_counter;

int io_read_file(const char *path, char **out, size_t *len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pk_err_errno("cannot open", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int rc = pk_err_errno("cannot stat", path);
        close(fd);
        return rc;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = pk_malloc(cap);
    if (!buf) {
        close(fd);
        return pk_err(PACKER_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = pk_realloc(buf, cap * 2);
            if (!nb) {
                pk_free(buf);
                close(fd);
                return pk_err(PACKER_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int rc = pk_err_errno("cannot read", path);
            pk_free(buf);
            close(fd);
            return rc;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

int io_read_full(int fd, void *data, size_t len, const char *path)
{
    char *buf = data;
    while (len > 0) {
        ssize_t r = read(fd, buf, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return pk_err_errno("cannot read", path);
        if (r == 0)
            return pk_err(PACKER_EIO, "%s: file ended early", path);
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

int io_write_all(int fd, const void *data, size_t len, const char *path)
{
    const char *buf = data;
    while (len > 0) {
        if (pk_fault_hit(FAULT_WRITE)) {
            errno = EIO;
            return pk_err_errno("cannot write", path);
        }
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return pk_err_errno("cannot write", path);
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int fsync_fd(int fd, const char *path)
{
    if (pk_fault_hit(FAULT_FSYNC)) {
        errno = EIO;
        return pk_err_errno("cannot fsync", path);
    }
    if (fsync(fd) < 0)
        return pk_err_errno("cannot fsync", path);
    return 0;
}

int io_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pk_err_errno("cannot open directory", dir);
    int rc = fsync_fd(fd, dir);
    close(fd);
    return rc;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return pk_strdup(".");
    if (slash == path)
        return pk_strdup("/");
    return pk_strndup(path, (size_t)(slash - path));
}

/* A big file's dirty pages are handed to the disk every WRITEBACK_STEP
 * bytes (sync_file_range, which does not wait), so the disk works while
 * the rest is still being written and the closing fsync finds little left
 * to do. A hint only: durability still comes from that fsync. */
#define WRITEBACK_STEP (8u << 20)

struct io_out {
    int fd;
    char *path, *tmp, *dir;
    off_t written, handed; /* bytes written; bytes handed to writeback */
};

static void out_free(io_out *o)
{
    pk_free(o->path);
    pk_free(o->tmp);
    pk_free(o->dir);
    pk_free(o);
}

int io_out_begin(const char *path, io_out **out)
{
    *out = NULL;
    io_out *o = pk_calloc(1, sizeof *o);
    if (!o)
        return pk_err(PACKER_ENOMEM, "%s: out of memory", path);
    o->path = pk_strdup(path);
    o->tmp = pk_asprintf("%s.tmp-%ld-%lu", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
    o->dir = dir_of(path);
    if (!o->path || !o->tmp || !o->dir) {
        out_free(o);
        return pk_err(PACKER_ENOMEM, "%s: out of memory", path);
    }
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        int rc = pk_err_errno("cannot create", o->tmp);
        out_free(o);
        return rc;
    }
    *out = o;
    return 0;
}

int io_out_write(io_out *o, const void *buf, size_t len)
{
    int rc = io_write_all(o->fd, buf, len, o->path);
    if (rc)
        return rc;
    o->written += (off_t)len;
    if (o->written - o->handed >= WRITEBACK_STEP) {
        sync_file_range(o->fd, o->handed, o->written - o->handed, SYNC_FILE_RANGE_WRITE);
        o->handed = o->written;
    }
    return 0;
}

void io_out_abort(io_out *o)
{
    if (!o)
        return;
    if (o->fd >= 0)
        close(o->fd);
    unlink(o->tmp);
    out_free(o);
}

int io_out_commit(io_out *o)
{
    int rc = fsync_fd(o->fd, o->path);
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) < 0 && rc == 0)
        rc = pk_err_errno("cannot close", o->path);
    if (rc == 0 && pk_fault_hit(FAULT_RENAME)) {
        errno = EIO;
        rc = pk_err_errno("cannot rename into place", o->path);
    }
    if (rc == 0 && rename(o->tmp, o->path) < 0)
        rc = pk_err_errno("cannot rename into place", o->path);
    if (rc != 0) {
        io_out_abort(o);
        return rc;
    }
    rc = io_fsync_dir(o->dir);
    out_free(o);
    return rc;
}

int io_write_atomic(const char *path, const void *buf, size_t len)
{
    io_out *o;
    int rc = io_out_begin(path, &o);
    if (rc == 0)
        rc = io_out_write(o, buf, len);
    if (rc != 0) {
        io_out_abort(o);
        return rc;
    }
    rc = io_out_commit(o);
    if (rc == 0)
        obs_note_write(path, false); /* packer's own write, not a change to report */
    return rc;
}

int io_unlink_durable(const char *path)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return pk_err_errno("cannot remove", path);
    obs_note_write(path, false);
    char *dir = dir_of(path);
    if (!dir)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int rc = io_fsync_dir(dir);
    pk_free(dir);
    return rc;
}

int io_mkdirs(const char *path)
{
    char *p = pk_strdup(path);
    if (!p)
        return pk_err(PACKER_ENOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                int rc = pk_err_errno("cannot create directory", p);
                pk_free(p);
                return rc;
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    pk_free(p);
    return 0;
}

bool io_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool io_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *io_join(const char *a, const char *b)
{
    if (!b || !*b || strcmp(b, ".") == 0)
        return pk_strdup(a);
    size_t na = strlen(a), nb = strlen(b); /* by hand: joins run per input, per build */
    char *s = pk_malloc(na + nb + 2);
    if (!s)
        return NULL;
    memcpy(s, a, na);
    s[na] = '/';
    memcpy(s + na + 1, b, nb + 1);
    return s;
}
