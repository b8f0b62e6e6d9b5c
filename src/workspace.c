/*
 * workspace.c - the workspace on disk: packer.json, discovery, and the one
 * path-confinement check.
 *
 * A workspace is a directory holding packer.json (format, stable project
 * id, name) and .packer/ (packer-owned state). Every path that reaches
 * packer from a user, a manifest or the registry is confined here: it must
 * be relative, must not climb out with "..", and must not resolve through
 * a symlink to a place outside the workspace root.
 *
 * Threads: any; no shared state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define CONFIG_FILE "packer.json"

static const char GITIGNORE[] = "# local packer state; the registry/ is meant to be committed\n"
                                "/lock\n/generation\n/journal\n/cache/\n/build-*.json\n"
                                "*.tmp-*\n/doctor-state.json\n/quarantine/\n";

int ws_find(const char *start, char **out_root)
{
    char *dir = realpath(start ? start : ".", NULL);
    *out_root = NULL;
    if (!dir && (errno == ENOENT || errno == ENOTDIR))
        return pk_err(PACKER_ENOWORKSPACE, "%s: no such directory", start ? start : ".");
    if (!dir)
        return pk_err_errno("cannot resolve", start ? start : ".");
    for (;;) {
        char *cfg = io_join(dir, CONFIG_FILE);
        if (!cfg) {
            free(dir);
            return pk_err(PACKER_ENOMEM, "out of memory");
        }
        bool found = io_is_file(cfg);
        pk_free(cfg);
        if (found) {
            *out_root = dir;
            return 0;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
            break;
        *slash = '\0';
    }
    free(dir);
    return pk_err(PACKER_ENOWORKSPACE,
                  "%s: not a packer workspace (or any parent); run 'packer init' first",
                  start ? start : ".");
}

void ws_config_clear(ws_config *c)
{
    pk_free(c->root);
    pk_free(c->project_id);
    pk_free(c->name);
    memset(c, 0, sizeof *c);
}

int ws_parse_config(const char *text, size_t len, ws_config *out)
{
    cJSON *j = NULL;
    int rc = json_parse_text(text, len, CONFIG_FILE, &j);
    if (rc == 0 && !cJSON_IsObject(j))
        rc = pk_err(PACKER_EPARSE, "%s:1:1: must be a JSON object", CONFIG_FILE);
    const cJSON *fmt = rc == 0 ? cJSON_GetObjectItemCaseSensitive(j, "format") : NULL;
    const char *id = rc == 0 ? json_get_str(j, "project_id") : NULL;
    const char *name = rc == 0 ? json_get_str(j, "name") : NULL;
    if (rc == 0 && !cJSON_IsNumber(fmt))
        rc = json_field_err(CONFIG_FILE, text, "format", "\"format\" must be a number");
    else if (rc == 0 && fmt->valuedouble != PACKER_WORKSPACE_FORMAT)
        rc = json_field_err(CONFIG_FILE, text, "format",
                            "unsupported workspace format %g (this packer reads %d)",
                            fmt->valuedouble, PACKER_WORKSPACE_FORMAT);
    else if (rc == 0 && (!id || !*id))
        rc = json_field_err(CONFIG_FILE, text, "project_id",
                            "\"project_id\" must be a non-empty string");
    else if (rc == 0 && !name)
        rc = json_field_err(CONFIG_FILE, text, "name", "\"name\" must be a string");
    if (rc == 0) {
        out->format = PACKER_WORKSPACE_FORMAT;
        out->project_id = pk_strdup(id);
        out->name = pk_strdup(name);
        if (!out->project_id || !out->name)
            rc = pk_err(PACKER_ENOMEM, "out of memory");
    }
    cJSON_Delete(j);
    return rc;
}

static int config_parse(const char *root, ws_config *out)
{
    char *path = io_join(root, CONFIG_FILE), *text = NULL;
    size_t len;
    if (!path)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int rc = io_read_file(path, &text, &len);
    pk_free(path);
    if (rc == PACKER_ENOTFOUND)
        return pk_err(PACKER_ENOWORKSPACE, "%s: not a packer workspace (no %s)", root, CONFIG_FILE);
    if (rc == 0)
        rc = ws_parse_config(text, len, out);
    pk_free(text);
    return rc;
}

int ws_load(const char *dir, ws_config *out)
{
    memset(out, 0, sizeof *out);
    char *root = realpath(dir, NULL);
    if (!root)
        return errno == ENOENT ? pk_err(PACKER_ENOWORKSPACE, "%s: no such directory", dir)
                               : pk_err_errno("cannot resolve", dir);
    out->root = pk_strdup(root);
    free(root);
    if (!out->root)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int rc = config_parse(out->root, out);
    if (rc)
        ws_config_clear(out);
    return rc;
}

int ws_create(const char *dir, const char *name, ws_config *out)
{
    memset(out, 0, sizeof *out);
    char *root = realpath(dir, NULL);
    if (!root)
        return pk_err_errno("cannot resolve", dir);
    char *cfg_path = io_join(root, CONFIG_FILE), *owned = io_join(root, ".packer");
    char *reg = owned ? io_join(owned, "registry") : NULL;
    char *gi = owned ? io_join(owned, ".gitignore") : NULL;
    char id[33], *text = NULL;
    cJSON *j = cJSON_CreateObject();
    int rc = 0;
    if (!cfg_path || !reg || !gi || !j) {
        rc = pk_err(PACKER_ENOMEM, "out of memory");
        goto out;
    }
    if (io_is_file(cfg_path)) {
        rc = pk_err(PACKER_EEXIST, "%s: already a packer workspace", root);
        goto out;
    }
    if (!name || !*name) {
        const char *base = strrchr(root, '/');
        name = base && base[1] ? base + 1 : "workspace";
    }
    hash_random_hex(id, 16);
    if (!cJSON_AddNumberToObject(j, "format", PACKER_WORKSPACE_FORMAT) ||
        !json_add_str(j, "name", name) || !json_add_str(j, "project_id", id) ||
        !(text = json_canonical(j, true))) {
        rc = pk_err(PACKER_ENOMEM, "out of memory");
        goto out;
    }
    /* packer.json goes last: it is what makes the directory a workspace */
    if ((rc = io_mkdirs(reg)) == 0 && (rc = io_write_atomic(gi, GITIGNORE, strlen(GITIGNORE))) == 0)
        rc = io_write_atomic(cfg_path, text, strlen(text));
    if (rc == 0) {
        out->root = pk_strdup(root);
        out->project_id = pk_strdup(id);
        out->name = pk_strdup(name);
        out->format = PACKER_WORKSPACE_FORMAT;
        if (!out->root || !out->project_id || !out->name) {
            ws_config_clear(out);
            rc = pk_err(PACKER_ENOMEM, "out of memory");
        }
    }
out:
    cJSON_Delete(j);
    pk_free(text);
    pk_free(cfg_path);
    pk_free(owned);
    pk_free(reg);
    pk_free(gi);
    free(root);
    return rc;
}

/* realpath of the longest existing prefix of abs must stay under root. */
static int check_symlinks(const char *root, const char *rel, const char *shown)
{
    char *abs = io_join(root, rel);
    if (!abs)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int rc = 0;
    for (;;) {
        char *real = realpath(abs, NULL);
        if (real) {
            size_t n = strlen(root);
            bool inside = strncmp(real, root, n) == 0 && (real[n] == '/' || real[n] == '\0');
            free(real);
            if (!inside)
                rc = pk_err(PACKER_EPATH, "%s: resolves outside the workspace (symlink)", shown);
            break;
        }
        char *slash = strrchr(abs, '/');
        if (!slash || (size_t)(slash - abs) < strlen(root))
            break;
        *slash = '\0';
    }
    pk_free(abs);
    return rc;
}

int ws_confine(const char *root, const char *rel, char **out)
{
    *out = NULL;
    if (!rel || !*rel)
        return pk_err(PACKER_EINVAL, "empty path");
    if (rel[0] == '/')
        return pk_err(PACKER_EPATH, "%s: absolute paths are not allowed", rel);
    size_t n = strlen(rel);
    char *norm = pk_malloc(n + 2);
    if (!norm)
        return pk_err(PACKER_ENOMEM, "out of memory");
    size_t len = 0;
    const char *s = rel;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t seg = e ? (size_t)(e - s) : strlen(s);
        if (seg == 2 && s[0] == '.' && s[1] == '.') {
            if (len == 0) {
                pk_free(norm);
                return pk_err(PACKER_EPATH, "%s: leaves the workspace", rel);
            }
            while (len > 0 && norm[len - 1] != '/')
                len--;
            if (len > 0)
                len--;
        } else if (seg > 0 && !(seg == 1 && s[0] == '.')) {
            if (len > 0)
                norm[len++] = '/';
            memcpy(norm + len, s, seg);
            len += seg;
        }
        s += seg;
        if (*s == '/')
            s++;
    }
    if (len == 0)
        norm[len++] = '.';
    norm[len] = '\0';
    int rc = check_symlinks(root, norm, rel);
    if (rc) {
        pk_free(norm);
        return rc;
    }
    *out = norm;
    return 0;
}

int ws_confine_under(const char *root, const char *base, const char *rel, char **out)
{
    *out = NULL;
    if (rel && rel[0] == '/')
        return pk_err(PACKER_EPATH, "%s: absolute paths are not allowed", rel);
    char *joined = io_join(base, rel);
    if (!joined)
        return pk_err(PACKER_ENOMEM, "out of memory");
    int rc = ws_confine(root, joined, out);
    pk_free(joined);
    return rc;
}

bool ws_is_owned(const char *rel)
{
    return strcmp(rel, ".packer") == 0 || strncmp(rel, ".packer/", 8) == 0;
}
