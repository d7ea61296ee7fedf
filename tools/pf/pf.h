/* Commands of the pf tool, one file each (the demo: a folder, demo/). Each
 * gets argv from its own name on and returns the process exit status. */
#ifndef PF_TOOLS_PF_H
#define PF_TOOLS_PF_H

#include "puffinflow/puffinflow.h"

int pf_tool_demo(int argc, char **argv);
int pf_tool_watch(int argc, char **argv);

#endif /* PF_TOOLS_PF_H */
