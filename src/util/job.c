/*
 * job.c - see job.h.
 */
#include "job.h"

#include "clock.h"

void job_init(struct job_control *job)
{
	*job = (struct job_control){.deadline = 0};
	atomic_init(&job->cancelled, false);
}

int job_check(const struct job_control *job, const char *what, struct igs_error *err)
{
	if (!job)
		return 0;
	if (atomic_load(&job->cancelled))
		return igs_fail(err, IGS_ERR_CANCELLED, "%s cancelled: the client went away", what);
	if (job->deadline > 0 && igs_now() > job->deadline)
		return igs_fail(err, IGS_ERR_DEADLINE, "%s: the request's deadline passed", what);
	return 0;
}
