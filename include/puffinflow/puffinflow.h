/* puffinflow — fault-tolerance patterns for workflow execution.
 * This header includes every public header of the core library (the HTTP
 * endpoint, a separate library, has its own puffinflow/http.h). */
#ifndef PUFFINFLOW_H
#define PUFFINFLOW_H

/* layer 0: base */
#include "puffinflow/alloc.h"
#include "puffinflow/clock.h"
#include "puffinflow/deadline.h"
#include "puffinflow/error.h"
#include "puffinflow/types.h"
#include "puffinflow/version.h"

/* layer 1: patterns */
#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/degrade.h"
#include "puffinflow/health.h"
#include "puffinflow/leak.h"
#include "puffinflow/ratelimit.h"
#include "puffinflow/registry.h"
#include "puffinflow/retry.h"
#include "puffinflow/shared.h"
#include "puffinflow/sync.h"
#include "puffinflow/timeout.h"

/* layer 2: runtime */
#include "puffinflow/agent.h"
#include "puffinflow/context.h"
#include "puffinflow/executor.h"
#include "puffinflow/subprocess.h"

#endif /* PUFFINFLOW_H */
