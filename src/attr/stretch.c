/*
 * stretch.c - adaptive IG's trapezoid rule refined stretch by stretch.
 *
 * Refining the whole path at once moves in steps of 2x to 4x the points,
 * so a tolerance just missed at m points costs m more; and the error is
 * not spread evenly along the path (on ResNets the stretch nearest the
 * baseline errs about twice as much as the others).  So the first round's
 * cells are grouped into at most STRETCH_MAX stretches, each kept as its
 * own trapezoid rule with its own spacing, and a round refines only the
 * stretches where refining buys the most.
 *
 * Each stretch has an estimate of its own error: the calibrated sub-rule
 * difference (estimate.c) of its last refinement.  Errors of different
 * stretches point different ways (jumps at different places along the
 * path), so the squared errors add: the whole estimate is
 * sqrt(sum_s est2_s) / ||attr||.  A stretch's completeness error, its
 * trapezoid of dF/dalpha minus F(hi) - F(lo), is exact: F is known at
 * every node.
 *
 * The plan (stretch_plan) raises one stretch's factor q at a time by one,
 * each time the raise that removes the most predicted squared error per
 * new point (est2 q^-2p, p the observed rate), until the prediction is
 * within the tolerance.  The gains fall as q grows, so this greedy choice
 * is the cheapest plan for the prediction.  A prediction that falls short
 * costs a small round more: the stretches are a fourteenth of the path
 * (from the default 15 points).
 */
#include <math.h>

#include "attr_internal.h"

int stretch_layout(int cells, struct stretch *s)
{
	int count = cells < STRETCH_MAX ? cells : STRETCH_MAX;
	for (int i = 0; i < count; i++) {
		/* whole first-round cells, as evenly as they divide */
		int c0 = (int)((long)cells * i / count), c1 = (int)((long)cells * (i + 1) / count);
		s[i] = (struct stretch){.lo = (double)c0 / cells,
		                        .hi = (double)c1 / cells,
		                        .cells = c1 - c0,
		                        .q = 1,
		                        .est2 = INFINITY,
		                        .est2_before = INFINITY};
	}
	return count;
}

/* The observed rate p: the stretches refined last round went from
 * est2_before to est2 by their factor q_last, est2 ~ q^-2p; p solves
 * sum est2_before q^-2p = sum est2 (bisection; the left side falls in p),
 * in [0.5, 2].  1 (the rate of a ReLU network's piecewise constant
 * gradient) before two estimates of the same stretch exist. */
double stretch_rate(const struct stretch *s, int count)
{
	double before = 0, after = 0;
	for (int i = 0; i < count; i++)
		if (s[i].refined && isfinite(s[i].est2_before)) {
			before += s[i].est2_before;
			after += s[i].est2;
		}
	if (!(before > 0) || !(after > 0))
		return 1.0;
	double lo = 0.5, hi = 2.0;
	for (int it = 0; it < 40; it++) {
		double p = (lo + hi) / 2, lhs = 0;
		for (int i = 0; i < count; i++)
			if (s[i].refined && isfinite(s[i].est2_before))
				lhs += s[i].est2_before * pow(s[i].q_last, -2 * p);
		if (lhs > after)
			lo = p;
		else
			hi = p;
	}
	return (lo + hi) / 2;
}

int stretch_plan(struct stretch *s, int count, const struct stretch_goal *goal)
{
	int added = 0;
	bool known = true;
	double total = 0, completeness = 0;
	for (int i = 0; i < count; i++) {
		s[i].q = 1;
		known = known && isfinite(s[i].est2);
		total += s[i].est2;
		completeness += s[i].completeness;
	}
	if (!known) {
		/* no estimate yet: halve every cell, as the uniform rule would */
		for (int i = 0; i < count; i++)
			added += s[i].cells;
		if (added > goal->room)
			return 0;
		for (int i = 0; i < count; i++)
			s[i].q = 2;
		return added;
	}
	double p = stretch_rate(s, count);
	double target = goal->tolerance * goal->tolerance * goal->attr_norm2;
	while (total > target) {
		int best = -1;
		double best_gain = 0, best_ratio = 0;
		for (int i = 0; i < count; i++) {
			if (s[i].q >= STRETCH_FACTOR_MAX || added + s[i].cells > goal->room)
				continue;
			double gain = s[i].est2 * (pow(s[i].q, -2 * p) - pow(s[i].q + 1, -2 * p));
			double ratio = gain / s[i].cells;
			if (best < 0 || ratio > best_ratio) {
				best = i;
				best_gain = gain;
				best_ratio = ratio;
			}
		}
		if (best < 0)
			break;
		s[best].q++;
		added += s[best].cells;
		total -= best_gain;
	}
	if (fabs(completeness) > goal->tolerance * goal->f_delta) {
		/* the completeness error short: refine the stretch that errs
		 * most in it, unless it is refined already (or the one after
		 * it that still fits max_steps) */
		int worst = -1;
		for (int i = 0; i < count; i++)
			if ((s[i].q > 1 || added + s[i].cells <= goal->room) &&
			    (worst < 0 || fabs(s[i].completeness) > fabs(s[worst].completeness)))
				worst = i;
		if (worst >= 0 && s[worst].q == 1) {
			s[worst].q = 2;
			added += s[worst].cells;
		}
	}
	return added;
}
