/*
 * clock.h - the one clock deadlines, timings and logs are measured on.
 */
#ifndef IGSERVE_CLOCK_H
#define IGSERVE_CLOCK_H

/* Seconds on CLOCK_MONOTONIC (never jumps with the wall clock). */
double igs_now(void);

/* Milliseconds since igs_now() returned t0, rounded to the microsecond
 * (more digits are noise in a JSON timing). */
double igs_ms_since(double t0);

#endif
