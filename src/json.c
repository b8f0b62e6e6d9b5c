/*
 * json.c - the one JSON reader and the canonical JSON writer.
 *
 * Parsing is cJSON's; this file adds what packer promises on top of it:
 * errors that name the file and the line:column, and canonical output
 * (keys sorted, two-space indent with one array element per line for
 * human-facing files, minified for build outputs, trailing newline).
 *
 * Threads: any; no shared state.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void line_col(const char *text, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && text[i]; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

int json_parse_text(const char *text, size_t len, const char *display, cJSON **out)
{
    const char *end = NULL;
    unsigned long failures = pk_alloc_failures();
    *out = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j && pk_alloc_failures() != failures)
        return pk_err(PACKER_ENOMEM, "%s: out of memory while parsing", display);
    if (j) {
        const char *p = end;
        while (p < text + len && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
            p++;
        if (p == text + len) {
            *out = j;
            return 0;
        }
        cJSON_Delete(j);
        end = p;
    }
    if (!end || end < text || end > text + len)
        return pk_err(PACKER_ENOMEM, "%s: out of memory while parsing", display);
    const char *rest = end;
    while (rest < text + len && strchr(" \t\r\n", *rest))
        rest++;
    int line, col;
    if (rest == text + len) {
        line_col(text, len, &line, &col);
        return pk_err(PACKER_EPARSE, "%s:%d:%d: unexpected end of JSON", display, line, col);
    }
    /* cJSON stops just past a bad token that ends a line: point at it */
    if (end > text && strchr(" \t\r\n", *end) && !strchr(" \t\r\n", end[-1]))
        end--;
    line_col(text, (size_t)(end - text), &line, &col);
    int shown = (int)strcspn(end, "\r\n");
    return pk_err(PACKER_EPARSE, "%s:%d:%d: invalid JSON near '%.*s'", display, line, col,
                  shown < 12 ? shown : 12, end);
}

int json_parse_arena(const char *text, size_t len, const char *display, arena *a, cJSON **out)
{
    arena *old = pk_cjson_arena(a);
    int rc = json_parse_text(text, len, display, out);
    pk_cjson_arena(old);
    return rc;
}

int json_load_file(const char *path, const char *display, cJSON **out)
{
    char *text;
    size_t len;
    *out = NULL;
    int rc = io_read_file(path, &text, &len);
    if (rc == PACKER_ENOTFOUND)
        return pk_err(rc, "%s: file not found", display);
    if (rc)
        return rc;
    rc = json_parse_text(text, len, display, out);
    pk_free(text);
    return rc;
}

int json_field_err(const char *display, const char *text, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char quoted[256];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *at = text ? strstr(text, quoted) : NULL;
    if (!at)
        return pk_err(PACKER_EPARSE, "%s: %s", display, msg);
    int line, col;
    line_col(text, (size_t)(at - text), &line, &col);
    return pk_err(PACKER_EPARSE, "%s:%d:%d: %s", display, line, col, msg);
}

/* ---- canonical writer -------------------------------------------------- */

static void sb_str(strbuf *b, const char *s)
{
    strbuf_put(b, s, strlen(s));
}

/* The writer runs over every response and report (10,000-asset build
 * reports included), so it avoids printf and per-character calls. */
void json_put_str(strbuf *b, const char *s)
{
    strbuf_put(b, "\"", 1);
    const char *run = s;
    for (;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        strbuf_put(b, run, (size_t)(s - run));
        if (!c)
            break;
        static const char hex[] = "0123456789abcdef";
        char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                                      : u;
        sb_str(b, esc);
        run = s + 1;
    }
    strbuf_put(b, "\"", 1);
}

/* Decimal digits of v, without printf. */
static void sb_u64(strbuf *b, unsigned long long v)
{
    char d[24];
    size_t i = sizeof d;
    do
        d[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    strbuf_put(b, d + i, sizeof d - i);
}

/* k/1000 in decimal, trailing zeros dropped (k is not a multiple of 1000):
 * timings in milliseconds are most of the non-integers packer writes. */
static void sb_milli(strbuf *b, long long k)
{
    unsigned long long a = k < 0 ? 0ULL - (unsigned long long)k : (unsigned long long)k;
    char frac[4] = {'.', (char)('0' + a / 100 % 10), (char)('0' + a / 10 % 10),
                    (char)('0' + a % 10)};
    size_t n = 4;
    while (frac[n - 1] == '0')
        n--;
    if (k < 0)
        strbuf_put(b, "-", 1);
    sb_u64(b, a / 1000);
    strbuf_put(b, frac, n);
}

void json_put_num(strbuf *b, double d)
{
    char num[64];
    if (!isfinite(d)) {
        sb_str(b, "null");
    } else if (d == floor(d) && fabs(d) < 9007199254740992.0) {
        if (d < 0)
            strbuf_put(b, "-", 1);
        sb_u64(b, (unsigned long long)fabs(d));
    } else if (fabs(d) < 1e12 && llround(d * 1000) / 1000.0 == d) {
        sb_milli(b, llround(d * 1000)); /* what %.15g gives, without its cost */
    } else {
        /* the shortest form that reads back as the same double */
        snprintf(num, sizeof num, "%.15g", d);
        if (strtod(num, NULL) != d)
            snprintf(num, sizeof num, "%.17g", d);
        sb_str(b, num);
    }
}

static int key_cmp(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string ? x->string : "", y->string ? y->string : "");
}

/* Sort object members by key, recursively; keeps cJSON's list invariants
 * (child->prev is the last element, last->next is NULL). */
bool json_sort_keys(cJSON *item)
{
    for (cJSON *c = item->child; c; c = c->next)
        if (!json_sort_keys(c))
            return false;
    if (!cJSON_IsObject(item) || !item->child || !item->child->next)
        return true;
    size_t n = 0;
    bool sorted = true;
    for (cJSON *c = item->child; c; c = c->next) {
        n++;
        if (c->next && key_cmp(&c, &c->next) > 0)
            sorted = false;
    }
    if (sorted) /* the common case: packer builds objects in key order */
        return true;
    cJSON **v = pk_malloc(n * sizeof *v);
    if (!v)
        return false;
    n = 0;
    for (cJSON *c = item->child; c; c = c->next)
        v[n++] = c;
    qsort(v, n, sizeof *v, key_cmp);
    for (size_t i = 0; i < n; i++) {
        v[i]->prev = i ? v[i - 1] : v[n - 1];
        v[i]->next = i + 1 < n ? v[i + 1] : NULL;
    }
    item->child = v[0];
    pk_free(v);
    return true;
}

static void indent(strbuf *b, bool pretty, int depth)
{
    static const char line[] = "\n                                ";
    if (!pretty)
        return;
    size_t n = 1 + 2 * (size_t)depth;
    strbuf_put(b, line, n < sizeof line - 1 ? n : sizeof line - 1);
    for (size_t i = sizeof line - 1; i < n; i++)
        strbuf_put(b, " ", 1);
}

static void emit(strbuf *b, const cJSON *j, bool pretty, int depth)
{
    if (cJSON_IsString(j)) {
        json_put_str(b, j->valuestring ? j->valuestring : "");
    } else if (cJSON_IsNumber(j)) {
        json_put_num(b, j->valuedouble);
    } else if (cJSON_IsTrue(j)) {
        sb_str(b, "true");
    } else if (cJSON_IsFalse(j)) {
        sb_str(b, "false");
    } else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        bool obj = cJSON_IsObject(j);
        sb_str(b, obj ? "{" : "[");
        for (const cJSON *c = j->child; c; c = c->next) {
            indent(b, pretty, depth + 1);
            if (obj) {
                json_put_str(b, c->string ? c->string : "");
                sb_str(b, pretty ? ": " : ":");
            }
            emit(b, c, pretty, depth + 1);
            if (c->next)
                sb_str(b, ",");
        }
        if (j->child)
            indent(b, pretty, depth);
        sb_str(b, obj ? "}" : "]");
    } else {
        sb_str(b, "null");
    }
}

char *json_canonical(cJSON *item, bool pretty)
{
    if (!item || !json_sort_keys(item))
        return NULL;
    strbuf b = {0};
    emit(&b, item, pretty, 0);
    if (pretty)
        strbuf_put(&b, "\n", 1);
    if (b.oom) {
        pk_free(b.s);
        return NULL;
    }
    return b.s;
}

cJSON *json_add_str(cJSON *obj, const char *key, const char *val)
{
    cJSON *s = val ? cJSON_CreateString(val) : cJSON_CreateNull();
    if (!s)
        return NULL;
    if (!cJSON_AddItemToObject(obj, key, s)) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

cJSON *json_add_item(cJSON *obj, const char *key, cJSON *item)
{
    if (!obj || !item || !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

cJSON *json_str_array(const char *const *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *s = cJSON_CreateString(v[i]);
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

const char *json_get_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
