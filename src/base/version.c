/* The version of the library in use, as compiled into it. */
#include "puffinflow/version.h"

const char *
pf_version(void)
{
    return PF_VERSION_STRING;
}

unsigned
pf_version_num(void)
{
    return PF_VERSION_NUM;
}
