/* puffinflow — fault-tolerance patterns for workflow execution.
 * This header includes every public header of the core library. */
#ifndef PUFFINFLOW_H
#define PUFFINFLOW_H

#include "puffinflow/alloc.h"
#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/error.h"
#include "puffinflow/types.h"
#include "puffinflow/version.h"

#endif /* PUFFINFLOW_H */
