/*
 * error.c - error codes as values, with a detailed message per thread.
 *
 * The code table is the X-macro in packer.h; the detailed message of the
 * last failure lives in thread-local storage so that concurrent callers
 * never see each other's messages.
 *
 * Threads: any.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[1024];

const char *packer_strerror(int err)
{
    switch (err) {
#define PACKER_ERR_CASE(name, value, msg)                                                          \
    case value:                                                                                    \
        return msg;
        PACKER_ERRORS(PACKER_ERR_CASE)
#undef PACKER_ERR_CASE
    }
    return "unknown error";
}

const char *packer_last_error(void)
{
    return last_error;
}

int pk_err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

int pk_err_errno(const char *what, const char *path)
{
    int e = errno;
    int code = PACKER_EIO;
    if (e == ENOENT || e == ENOTDIR)
        code = PACKER_ENOTFOUND;
    else if (e == ENOMEM)
        code = PACKER_ENOMEM;
    else if (e == EEXIST)
        code = PACKER_EEXIST;
    return pk_err(code, "%s: %s: %s", path, what, strerror(e));
}
