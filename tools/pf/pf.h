/* Commands of the pf tool, one file each. Each gets argv from its own name
 * on and returns the process exit status. */
#ifndef PF_TOOLS_PF_H
#define PF_TOOLS_PF_H

int pf_tool_demo(int argc, char **argv);
int pf_tool_watch(int argc, char **argv);

#endif /* PF_TOOLS_PF_H */
