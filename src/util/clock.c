/*
 * clock.c - see clock.h.
 */
#include "clock.h"

#include <math.h>
#include <time.h>

double igs_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double igs_ms_since(double t0)
{
	return round((igs_now() - t0) * 1e6) / 1e3;
}
