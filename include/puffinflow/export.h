/* puffinflow — symbol export macro shared by every public header. */
#ifndef PUFFINFLOW_EXPORT_H
#define PUFFINFLOW_EXPORT_H

/* PF_API marks a function the library exports. The library is built with
 * -fvisibility=hidden, so anything without PF_API stays internal. */
#if defined(PF_BUILDING_LIBRARY) && defined(__GNUC__)
#define PF_API __attribute__((visibility("default")))
#else
#define PF_API
#endif

#endif /* PUFFINFLOW_EXPORT_H */
