/*
 * fuzz_parsers.c - libFuzzer harness for every parser of untrusted bytes
 * in libpacker: asset.json manifests, packer.json, and registry shard
 * files. The first input byte picks the parser; the rest is the file.
 * Invariant under test: any bytes give a value or a positioned error,
 * never a crash, an out-of-bounds read or a leak.
 *
 *   make fuzz                     # builds build-fuzz/fuzz_parsers
 *   build-fuzz/fuzz_parsers -max_total_time=60 spec/fuzz/corpus
 */
#include <stdint.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = pk_strndup((const char *)data + 1, size - 1);
    if (!text)
        return 0;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0: {
        manifest *m = NULL;
        if (manifest_parse(text, len, "asset.json", &m) == 0)
            (void)manifest_address_ok(m->address);
        manifest_free(m);
        break;
    }
    case 1: {
        ws_config c = {0};
        ws_parse_config(text, len, &c);
        ws_config_clear(&c);
        break;
    }
    default: {
        snap *empty = snap_empty();
        snap_edit *e = empty ? snap_edit_begin(empty) : NULL;
        if (e && store_parse_shard(text, len, "ab.json", 0xab, e) == 0) {
            snap *s = snap_edit_finish(e, 1);
            char *out = NULL;
            size_t n;
            store_shard_text(s, 0xab, &out, &n);
            pk_free(out);
            snap_unref(s);
        } else {
            snap_edit_abort(e);
        }
        snap_unref(empty);
    }
    }
    pk_free(text);
    return 0;
}
