/*
 * api.c - the typed entry points of packer.h over packer_call(): each
 * builds the service's params object in C and goes through the same
 * dispatch (project_call), so a wrapper and a JSON call of the same
 * service cannot behave differently. Same threads and ownership as
 * packer_call.
 */
#include "internal.h"

static int call_asset(packer_project *p, const char *service_name, const char *asset,
                      packer_response **out)
{
    cJSON *params = cJSON_CreateObject();
    if (params && asset && !json_add_str(params, "asset", asset)) {
        cJSON_Delete(params);
        params = NULL;
    }
    return project_call(p, service_name, params, out);
}

static cJSON *register_params(const char *const *paths, size_t npaths,
                              const packer_register_opts *opts)
{
    cJSON *params = cJSON_CreateObject();
    if (!json_add_item(params, "paths",
                       paths ? json_str_array(paths, npaths) : cJSON_CreateArray())) {
        cJSON_Delete(params);
        return NULL;
    }
    if (opts && ((opts->address && !json_add_str(params, "address", opts->address)) ||
                 (opts->kind && !json_add_str(params, "kind", opts->kind)) ||
                 (opts->exclude && !cJSON_AddTrueToObject(params, "exclude")))) {
        cJSON_Delete(params);
        return NULL;
    }
    return params;
}

int packer_register_asset(packer_project *p, const char *const *paths, size_t npaths,
                          const packer_register_opts *opts, packer_response **out)
{
    return project_call(p, "register_asset", register_params(paths, npaths, opts), out);
}

int packer_include_asset(packer_project *p, const char *asset, packer_response **out)
{
    return call_asset(p, "include_asset_in_build", asset, out);
}

int packer_exclude_asset(packer_project *p, const char *asset, packer_response **out)
{
    return call_asset(p, "exclude_asset_from_build", asset, out);
}

int packer_remove_asset(packer_project *p, const char *asset, int delete_files, int consent,
                        packer_response **out)
{
    cJSON *params = cJSON_CreateObject();
    if (params && ((asset && !json_add_str(params, "asset", asset)) ||
                   !cJSON_AddBoolToObject(params, "delete_files", delete_files) ||
                   !cJSON_AddBoolToObject(params, "consent", consent))) {
        cJSON_Delete(params);
        params = NULL;
    }
    return project_call(p, "remove_asset", params, out);
}

int packer_list_assets(packer_project *p, packer_response **out)
{
    return project_call(p, "list_assets", cJSON_CreateObject(), out);
}

int packer_get_asset_details(packer_project *p, const char *asset, packer_response **out)
{
    return call_asset(p, "get_asset_details", asset, out);
}

int packer_find_workspace(const char *start, char **out_root)
{
    return ws_find(start, out_root);
}
