/*
 * fuzz_rpc.c - libFuzzer harness for packer serve's framing (rpc.c): the
 * bytes a client writes to the server's stdin. The first input byte sets
 * how many bytes each read returns (1..256), so frames split at every
 * possible boundary; the rest is the stream. Invariants under test: any
 * bytes give frames, errors and an end, never a crash, an out-of-bounds
 * access, a leak or an endless loop (every call consumes input); a frame's
 * body is exactly its length and NUL-terminated; bodies then go through
 * the same JSON parser the server uses.
 *
 *   make fuzz                     # builds build-fuzz/fuzz_rpc
 *   build-fuzz/fuzz_rpc -max_total_time=60 spec/fuzz/rpc-corpus
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p;
    size_t n, chunk;
} src;

static ssize_t mem_read(void *ctx, void *buf, size_t n)
{
    src *s = ctx;
    size_t k = n < s->chunk ? n : s->chunk;
    if (k > s->n)
        k = s->n;
    memcpy(buf, s->p, k);
    s->p += k;
    s->n -= k;
    return (ssize_t)k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    src s = {data + 1, size - 1, (size_t)data[0] + 1};
    rpc_reader *r = rpc_reader_new(mem_read, &s);
    if (!r)
        return 0;
    for (size_t calls = 0;; calls++) {
        if (calls > 2 * size + 4)
            abort(); /* a call that consumed nothing and did not end */
        char *body, err[160];
        size_t len;
        int rc = rpc_next(r, &body, &len, err, sizeof err);
        if (rc == RPC_FRAME) {
            if (body[len] != '\0' || len > RPC_MAX_BODY)
                abort();
            cJSON_Delete(cJSON_ParseWithLength(body, len));
            pk_free(body);
        } else if (rc == RPC_BAD) {
            if (!err[0])
                abort(); /* an error always says why */
        } else {
            break;
        }
    }
    rpc_reader_free(r);
    return 0;
}
