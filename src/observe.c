/*
 * observe.c - background observation of an open project's workspace.
 *
 * Placeholder: observation is being implemented (issue 6); until then
 * turning it on is accepted and observes nothing.
 */
#include "internal.h"

int packer_project_observe(packer_project *p, int on)
{
    (void)on;
    if (!p)
        return pk_err(PACKER_EINVAL, "project is required");
    return 0;
}
