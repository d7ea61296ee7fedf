/* The server-side scripts of puffinflow-redis, loaded with SCRIPT LOAD on
 * every new command connection and run with EVALSHA. Each runs atomically
 * in Redis and reads the time from Redis (TIME), so processes on hosts
 * with different clocks agree. Numbers go back as integers. */
#ifndef PF_REDIS_SCRIPTS_H
#define PF_REDIS_SCRIPTS_H

/* Indexed by SCRIPT_* (redis_impl.h). */
extern const char *const pf__redis_scripts[];

#endif /* PF_REDIS_SCRIPTS_H */
