/*
 * check.h - the tiny assertion kit shared by the C tests in spec/c/.
 *
 * CHECK(cond) records a pass or a failure (with file:line) and goes on;
 * REQUIRE(cond) also returns from the test function. Each test program
 * ends with CHECK_DONE(), which prints "N passed, N failed" and sets the
 * exit status; scripts/run-tests.sh adds the lines up.
 */
#ifndef PACKER_CHECK_H
#define PACKER_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed;

/* Count one check; say where it failed. Returns ok. */
static inline int check_count(int ok, const char *file, int line, const char *expr)
{
    if (ok) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
    }
    return ok;
}

#define CHECK(cond) ((void)check_count((cond) ? 1 : 0, __FILE__, __LINE__, #cond))

/* cond is evaluated once: it may have side effects (open, start, ...). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!check_count((cond) ? 1 : 0, __FILE__, __LINE__, #cond))                               \
            return;                                                                                \
    } while (0)

#define CHECK_DONE()                                                                               \
    do {                                                                                           \
        printf("%d passed, %d failed\n", check_passed, check_failed);                              \
        return check_failed ? 1 : 0;                                                               \
    } while (0)

#endif
