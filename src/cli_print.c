/*
 * cli_print.c - human-readable renderings of read responses for the CLI.
 * The --json form is the response itself; these are for people.
 *
 * Threads: main thread of the CLI.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "internal.h"

static const char *str(const cJSON *o, const char *k)
{
    const char *s = json_get_str(o, k);
    return s ? s : "-";
}

void cli_print_list(const cJSON *root)
{
    const cJSON *data = cJSON_GetObjectItem(root, "data"), *a;
    const cJSON *assets = cJSON_GetObjectItem(data, "assets");
    if (cJSON_GetArraySize(assets) > 0)
        printf("%-16s  %-3s  %-8s  %-32s  %s\n", "ASSET", "INC", "KIND", "ADDRESS", "ROOT");
    cJSON_ArrayForEach(a, assets)
    {
        printf("%-16s  %-3s  %-8s  %-32s  %s\n", str(a, "asset_id"),
               cJSON_IsTrue(cJSON_GetObjectItem(a, "included")) ? "yes" : "no", str(a, "kind"),
               str(a, "address"), str(a, "root"));
    }
    printf("%s\n", str(root, "summary"));
}

void cli_print_details(const cJSON *root)
{
    const cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "data"), "asset"), *in;
    printf("asset     %s\naddress   %s\nroot      %s%s\nkind      %s\nincluded  %s\n",
           str(a, "asset_id"), str(a, "address"), str(a, "root"),
           cJSON_IsFalse(cJSON_GetObjectItem(a, "root_exists")) ? "  (missing)" : "",
           str(a, "kind"), cJSON_IsTrue(cJSON_GetObjectItem(a, "included")) ? "yes" : "no");
    printf("inputs\n");
    cJSON_ArrayForEach(in, cJSON_GetObjectItem(a, "inputs"))
    {
        if (cJSON_IsTrue(cJSON_GetObjectItem(in, "exists")))
            printf("  %-40s %10.0f  %s\n", str(in, "path"),
                   cJSON_GetNumberValue(cJSON_GetObjectItem(in, "size")), str(in, "hash"));
        else
            printf("  %-40s    missing\n", str(in, "path"));
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(root, "diagnostics"))
        fprintf(stderr, "  %s: %s\n", str(d, "severity"), str(d, "message"));
}

void cli_print_status(const cJSON *root)
{
    const cJSON *d = cJSON_GetObjectItem(root, "data");
    const cJSON *a = cJSON_GetObjectItem(d, "assets");
    printf("workspace   %s\nname        %s\nproject id  %s\nruntime     %s\ngeneration  %.0f\n"
           "assets      %.0f registered, %.0f included, %.0f excluded\n",
           str(d, "root"), str(d, "name"), str(d, "project_id"), str(root, "runtime_state"),
           cJSON_GetNumberValue(cJSON_GetObjectItem(d, "generation")),
           cJSON_GetNumberValue(cJSON_GetObjectItem(a, "registered")),
           cJSON_GetNumberValue(cJSON_GetObjectItem(a, "included")),
           cJSON_GetNumberValue(cJSON_GetObjectItem(a, "excluded")));
}

static void print_actions(const cJSON *root, const char *key, const char *label)
{
    const cJSON *a, *t;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(root, key))
    {
        printf("%s [%s] %s\n", label, str(a, "safety"), str(a, "description"));
        printf("      id %s\n", str(a, "id"));
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(a, "targets"))
            printf("      %s\n", cJSON_GetStringValue(t));
    }
}

void cli_print_doctor(const cJSON *root)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(root, "diagnostics"))
    {
        const char *fix = json_get_str(d, "fix");
        printf("%-7s %-24s %s\n", str(d, "severity"), str(d, "code"), str(d, "message"));
        if (fix)
            printf("%-7s %-24s fix %s\n", "", "", fix);
    }
    print_actions(root, "proposed_actions", "would");
    print_actions(root, "applied_actions", "done ");
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(root, "blockers"))
        printf("blocked %-24s %s\n", str(d, "code"), str(d, "message"));
    const char *plan = json_get_str(cJSON_GetObjectItem(root, "data"), "plan_id");
    if (plan)
        printf("plan %s\n", plan);
    printf("%s\n", str(root, "summary"));
}

void cli_print_quarantine(const cJSON *root)
{
    const cJSON *r, *recs = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "data"), "records");
    if (cJSON_GetArraySize(recs) > 0)
        printf("%-26s  %-20s  %-9s  %s\n", "ID", "TIME", "TYPE", "ORIGINAL");
    cJSON_ArrayForEach(r, recs)
    {
        printf("%-26s  %-20s  %-9s  %s\n", str(r, "id"), str(r, "time"), str(r, "type"),
               str(r, "original"));
    }
    printf("%s\n", str(root, "summary"));
}
