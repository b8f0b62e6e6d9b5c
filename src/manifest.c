/*
 * manifest.c - asset.json, the manifest of one asset root.
 *
 *   {"kind": "raw", "inputs": ["hero.png"], "address": "sprites/hero",
 *    "options": {}}
 *
 * kind and inputs are required; address and options optional; unknown keys
 * are ignored so newer manifests stay readable. Validation errors name the
 * manifest (workspace-relative) and the line:column of the offending field.
 * Whether inputs stay inside the workspace is checked by the caller with
 * ws_confine_under(), the one confinement check.
 *
 * Threads: any; no shared state.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

void manifest_free(manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->ninputs; i++)
        pk_free(m->inputs[i]);
    pk_free(m->inputs);
    pk_free(m->kind);
    pk_free(m->address);
    cJSON_Delete(m->options);
    pk_free(m);
}

bool manifest_address_ok(const char *a)
{
    if (!a || !*a || a[0] == '/' || a[strlen(a) - 1] == '/')
        return false;
    for (const char *s = a; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '\\' || *s == 0x7f)
            return false;
    for (const char *seg = a; seg;) {
        const char *e = strchr(seg, '/');
        size_t n = e ? (size_t)(e - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        seg = e ? e + 1 : NULL;
    }
    return true;
}

static int validate(const cJSON *j, const char *text, const char *display, manifest *m)
{
    if (!cJSON_IsObject(j))
        return pk_err(PACKER_EPARSE, "%s:1:1: manifest must be a JSON object", display);
    const char *kind = json_get_str(j, "kind");
    if (!kind || !*kind)
        return json_field_err(display, text, "kind", "\"kind\" must be a non-empty string");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    if (!cJSON_IsArray(inputs))
        return json_field_err(display, text, "inputs", "\"inputs\" must be an array of strings");
    const cJSON *addr = cJSON_GetObjectItemCaseSensitive(j, "address");
    if (addr && !cJSON_IsNull(addr) && !manifest_address_ok(cJSON_GetStringValue(addr)))
        return json_field_err(display, text, "address",
                              "\"address\" must be a relative path like \"sprites/hero\"");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(j, "options");
    if (opts && !cJSON_IsObject(opts))
        return json_field_err(display, text, "options", "\"options\" must be an object");
    int n = cJSON_GetArraySize(inputs);
    m->kind = pk_strdup(kind);
    m->inputs = pk_calloc((size_t)n + 1, sizeof *m->inputs);
    m->address = cJSON_IsString(addr) ? pk_strdup(addr->valuestring) : NULL;
    m->options = opts ? cJSON_Duplicate(opts, 1) : cJSON_CreateObject();
    if (!m->kind || !m->inputs || !m->options || (cJSON_IsString(addr) && !m->address))
        return pk_err(PACKER_ENOMEM, "out of memory");
    const cJSON *in;
    cJSON_ArrayForEach(in, inputs)
    {
        if (!cJSON_IsString(in) || !*in->valuestring)
            return json_field_err(display, text, "inputs",
                                  "\"inputs\"[%zu] must be a non-empty string", m->ninputs);
        if (in->valuestring[0] == '/')
            return json_field_err(display, text, "inputs",
                                  "\"inputs\"[%zu] \"%s\" must be relative to the asset root",
                                  m->ninputs, in->valuestring);
        if (!(m->inputs[m->ninputs] = pk_strdup(in->valuestring)))
            return pk_err(PACKER_ENOMEM, "out of memory");
        m->ninputs++;
    }
    return 0;
}

int manifest_parse(const char *text, size_t len, const char *display, manifest **out)
{
    cJSON *j = NULL;
    manifest *m = pk_calloc(1, sizeof *m);
    *out = NULL;
    int rc = m ? json_parse_text(text, len, display, &j) : pk_err(PACKER_ENOMEM, "out of memory");
    if (rc == 0)
        rc = validate(j, text, display, m);
    if (rc == 0) {
        *out = m;
        m = NULL;
    }
    manifest_free(m);
    cJSON_Delete(j);
    return rc;
}

int manifest_load(const char *root, const char *asset_root, manifest **out)
{
    *out = NULL;
    char *dir = io_join(root, asset_root);
    char *path = dir ? io_join(dir, "asset.json") : NULL;
    char *display = io_join(asset_root, "asset.json");
    char *text = NULL;
    size_t len;
    int rc = (!dir || !path || !display) ? pk_err(PACKER_ENOMEM, "out of memory") : 0;
    if (rc == 0) {
        rc = io_read_file(path, &text, &len);
        if (rc == PACKER_ENOTFOUND)
            rc =
                pk_err(PACKER_ENOTFOUND, "%s: no manifest (asset.json) in this directory", display);
    }
    if (rc == 0)
        rc = manifest_parse(text, len, display, out);
    pk_free(text);
    pk_free(dir);
    pk_free(path);
    pk_free(display);
    return rc;
}

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static int strlist_push(strlist *l, char *s)
{
    if (!s)
        return PACKER_ENOMEM;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **nv = pk_realloc(l->v, cap * sizeof *nv);
        if (!nv) {
            pk_free(s);
            return PACKER_ENOMEM;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

static int collect(const char *abs, const char *rel, strlist *out, int depth)
{
    DIR *d = opendir(abs);
    if (!d)
        return pk_err_errno("cannot list", abs);
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.' || (!*rel && strcmp(e->d_name, "asset.json") == 0))
            continue;
        char *a = io_join(abs, e->d_name);
        char *r = *rel ? io_join(rel, e->d_name) : pk_strdup(e->d_name);
        struct stat st;
        if (!a || !r)
            rc = PACKER_ENOMEM;
        else if (lstat(a, &st) != 0)
            ; /* vanished while listing */
        else if (S_ISREG(st.st_mode)) {
            rc = strlist_push(out, r);
            r = NULL;
        } else if (S_ISDIR(st.st_mode) && depth < 16) {
            rc = collect(a, r, out, depth + 1);
        }
        pk_free(a);
        pk_free(r);
    }
    closedir(d);
    return rc;
}

int manifest_minimal(const char *dir_abs, const char *kind, char **out)
{
    strlist files = {0};
    *out = NULL;
    int rc = collect(dir_abs, "", &files, 0);
    cJSON *j = rc == 0 ? cJSON_CreateObject() : NULL;
    if (rc == 0) {
        qsort(files.v, files.n, sizeof *files.v, str_ptr_cmp);
        cJSON *in = json_str_array((const char *const *)files.v, files.n);
        if (!j || !in || !json_add_str(j, "kind", kind) ||
            !cJSON_AddItemToObject(j, "inputs", in) || !(*out = json_canonical(j, true))) {
            if (in && (!j || !cJSON_GetObjectItem(j, "inputs")))
                cJSON_Delete(in);
            rc = pk_err(PACKER_ENOMEM, "out of memory");
        }
    }
    cJSON_Delete(j);
    for (size_t i = 0; i < files.n; i++)
        pk_free(files.v[i]);
    pk_free(files.v);
    return rc;
}
