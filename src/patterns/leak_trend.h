/* The leak detector's arithmetic, kept apart so it can be tested on
 * synthetic series: a least-squares fit, the "steady growth" test built on
 * it, the sliding window of samples it runs over, and the threshold state
 * with hysteresis. No locks: the detector calls these under its own. */
#ifndef PF_SRC_LEAK_TREND_H
#define PF_SRC_LEAK_TREND_H

#include <stdbool.h>
#include <stddef.h>

/* Least-squares line through (x[i], y[i]), i < n: its slope (y per unit of
 * x) and R^2, the share of y's variance the line explains (1 for points on
 * a line; 0 for a flat y, whose slope is 0). False for n < 2 or when all x
 * are equal; then nothing is written. */
bool pf__lsq(const double *x, const double *y, size_t n, double *slope,
             double *r2);

/* The smallest R^2 that counts as steady growth rather than noise. */
#define PF__TREND_MIN_R2 0.7

/* True when y grows steadily at min_slope (> 0) or more: the slope over all
 * n points is >= min_slope, the line explains at least PF__TREND_MIN_R2 of
 * the variance (noise does not), and the slope over each half of the window
 * is >= min_slope / 2 (growth that goes on, not a single step or a rise
 * that has levelled off). *slope (may be NULL) gets the overall slope, NaN
 * when there is none (n < 2). n < 4 is never growth. */
bool pf__trend_growing(const double *x, const double *y, size_t n,
                       double min_slope, double *slope);

/* The last cap samples: a time (seconds) and two series (resident bytes,
 * open fds), in a ring. */
typedef struct pf__trend_window {
    size_t cap;
    size_t len;
    size_t head; /* where the next sample goes */
    double *t;
    double *rss;
    double *fds;
    double *lin_x; /* scratch: one series in time order, for the fit */
    double *lin_y;
} pf__trend_window_t;

/* Allocate a window of cap (>= 1) samples. 0 or PF_ENOMEM (nothing kept). */
int pf__trend_window_init(pf__trend_window_t *w, size_t cap);
void pf__trend_window_destroy(pf__trend_window_t *w);
void pf__trend_window_push(pf__trend_window_t *w, double t, double rss,
                           double fds);
bool pf__trend_window_full(const pf__trend_window_t *w);
/* Seconds from the oldest to the newest sample held. */
double pf__trend_window_span(const pf__trend_window_t *w);

enum { PF__TREND_RSS = 0, PF__TREND_FDS = 1 };

/* pf__trend_growing over one series of the window (in time order). */
bool pf__trend_window_growing(pf__trend_window_t *w, int series,
                              double min_slope, double *slope);

/* A threshold alert's state: raised once when over holds, cleared once
 * when under holds, silent in between. Returns +1 when it has just been
 * raised, -1 when just cleared, 0 otherwise. */
typedef struct pf__level {
    bool raised;
} pf__level_t;

int pf__level_step(pf__level_t *lv, bool over, bool under);

#endif /* PF_SRC_LEAK_TREND_H */
