/* Least squares, growth test, sample window and alert levels for the leak
 * detector (see leak_trend.h).
 *
 * The fit centres x and y on their means before summing, so that times of
 * thousands of seconds and byte counts of gigabytes do not lose the slope
 * to rounding. The growth test asks three things of a window, because a
 * slope alone is fooled twice: noise has a slope too (the R^2 test sees the
 * line explains little of it), and a one-off step or a rise that has
 * levelled off has a steep overall slope while nothing grows any more (the
 * half-window test sees one flat half). */
#include <math.h>
#include <stddef.h>

#include "puffinflow/error.h"

#include "leak_trend.h"
#include "mem.h"

bool
pf__lsq(const double *x, const double *y, size_t n, double *slope, double *r2)
{
    double mx = 0.0;
    double my = 0.0;
    double sxx = 0.0;
    double sxy = 0.0;
    double syy = 0.0;
    size_t i;

    if (n < 2) {
        return false;
    }
    for (i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    for (i = 0; i < n; i++) {
        double dx = x[i] - mx;
        double dy = y[i] - my;

        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if (!(sxx > 0.0)) {
        return false;
    }
    *slope = sxy / sxx;
    *r2 = syy > 0.0 ? (sxy * sxy) / (sxx * syy) : 0.0;
    return true;
}

bool
pf__trend_growing(const double *x, const double *y, size_t n, double min_slope,
                  double *slope)
{
    double s = NAN;
    double r2 = 0.0;
    double s1;
    double s2;
    double unused;
    size_t first;  /* points in the first half */
    size_t second; /* where the second half starts */
    bool fit = pf__lsq(x, y, n, &s, &r2);

    if (slope != NULL) {
        *slope = fit ? s : NAN;
    }
    if (!fit || n < 4 || s < min_slope || r2 < PF__TREND_MIN_R2) {
        return false;
    }
    /* Halves overlap on the middle point when n is odd. */
    first = (n + 1) / 2;
    second = n / 2;
    if (!pf__lsq(x, y, first, &s1, &unused) ||
        !pf__lsq(x + second, y + second, n - second, &s2, &unused)) {
        return false;
    }
    return s1 >= min_slope / 2 && s2 >= min_slope / 2;
}

int
pf__trend_window_init(pf__trend_window_t *w, size_t cap)
{
    double *block;

    if (cap == 0) {
        return PF_EINVAL;
    }
    /* Five arrays of cap doubles in one allocation. */
    block = pf__calloc(cap * 5, sizeof(double));
    if (block == NULL) {
        return PF_ENOMEM;
    }
    w->cap = cap;
    w->len = 0;
    w->head = 0;
    w->t = block;
    w->rss = block + cap;
    w->fds = block + 2 * cap;
    w->lin_x = block + 3 * cap;
    w->lin_y = block + 4 * cap;
    return 0;
}

void
pf__trend_window_destroy(pf__trend_window_t *w)
{
    pf__free(w->t);
    w->t = NULL;
}

void
pf__trend_window_push(pf__trend_window_t *w, double t, double rss, double fds)
{
    w->t[w->head] = t;
    w->rss[w->head] = rss;
    w->fds[w->head] = fds;
    w->head = (w->head + 1) % w->cap;
    if (w->len < w->cap) {
        w->len++;
    }
}

bool
pf__trend_window_full(const pf__trend_window_t *w)
{
    return w->len == w->cap;
}

/* Index of the i-th oldest sample. */
static size_t
nth(const pf__trend_window_t *w, size_t i)
{
    return (w->head + w->cap - w->len + i) % w->cap;
}

double
pf__trend_window_span(const pf__trend_window_t *w)
{
    if (w->len < 2) {
        return 0.0;
    }
    return w->t[nth(w, w->len - 1)] - w->t[nth(w, 0)];
}

bool
pf__trend_window_growing(pf__trend_window_t *w, int series, double min_slope,
                         double *slope)
{
    const double *src = series == PF__TREND_RSS ? w->rss : w->fds;
    size_t i;

    for (i = 0; i < w->len; i++) {
        size_t k = nth(w, i);

        w->lin_x[i] = w->t[k];
        w->lin_y[i] = src[k];
    }
    return pf__trend_growing(w->lin_x, w->lin_y, w->len, min_slope, slope);
}

int
pf__level_step(pf__level_t *lv, bool over, bool under)
{
    if (!lv->raised && over) {
        lv->raised = true;
        return 1;
    }
    if (lv->raised && under) {
        lv->raised = false;
        return -1;
    }
    return 0;
}
