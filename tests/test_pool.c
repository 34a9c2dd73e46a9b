/*
 * test_pool.c - the worker pool's scheduling rules (worker_pool.h):
 * predictions before attributions, the 4-in-a-row rule that keeps a flood
 * of predictions from starving an attribution, predictions run between an
 * attribution's chunks, at most workers-1 attributions at once, full
 * queues refused, queue depths, jobs skipped when cancelled or late, and
 * shutdown with jobs still queued.
 *
 * The jobs never touch the model: they write their names into one log, in
 * the order the pool runs them.  A job can be held at a gate that the test
 * opens, so the queues are filled while the worker is known to be busy:
 * every order below is decided by the rules alone, not by timing.  Waits
 * have a generous bound only so that a broken pool fails instead of hanging.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "service.h"
#include "worker_pool.h"

#define HANG_GUARD_S 60

/* ---- the log the jobs write, and the gate that holds them ---- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	char order[1024]; /* names, space-separated, in run order */
	int started;      /* held jobs that reached their gate */
	int parked;       /* times a held job began to wait at the gate */
	int gate;         /* stages opened */
	int done;         /* done callbacks */
} log_ = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, "", 0, 0, 0, 0};

struct test_job {
	struct pool_job job;
	const char *name;
	bool hold;   /* wait at the gate: stage k opens chunk k */
	int chunks;  /* > 1: an attribution in chunks, yielding between them */
	bool ran;    /* run was called */
	int status;  /* as the done callback saw it */
	char message[IGS_ERROR_MESSAGE_MAX];
};

static void log_append(const char *name)
{
	if (log_.order[0])
		strcat(log_.order, " ");
	strcat(log_.order, name);
}

/* Wait (lock held) until *value >= target; fails the test after HANG_GUARD_S. */
static void wait_for(const int *value, int target, const char *what)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HANG_GUARD_S;
	while (*value < target)
		if (pthread_cond_timedwait(&log_.changed, &log_.lock, &until) != 0)
			ck_abort_msg("pool: still waiting for %s (%d of %d); log: %s", what, *value,
			             target, log_.order);
}

static int run_test_job(struct service_worker *w, struct pool_job *job)
{
	(void)w;
	struct test_job *t = job->ctx;
	pthread_mutex_lock(&log_.lock);
	t->ran = true;
	if (t->hold) {
		log_.started++;
		pthread_cond_broadcast(&log_.changed);
	}
	int chunks = t->chunks > 0 ? t->chunks : 1;
	for (int k = 0; k < chunks; k++) {
		if (t->hold) {
			log_.parked++;
			pthread_cond_broadcast(&log_.changed);
			wait_for(&log_.gate, k + 1, "the gate");
		}
		if (chunks == 1) {
			log_append(t->name);
		} else {
			char name[64];
			snprintf(name, sizeof name, "%s.%d", t->name, k);
			log_append(name);
		}
		pthread_cond_broadcast(&log_.changed);
		if (k + 1 < chunks && job->control.yield) {
			/* between chunks, as attribution_run does */
			pthread_mutex_unlock(&log_.lock);
			job->control.yield(job->control.yield_ctx);
			pthread_mutex_lock(&log_.lock);
		}
	}
	pthread_mutex_unlock(&log_.lock);
	return 0;
}

static void test_job_done(struct pool_job *job)
{
	struct test_job *t = job->ctx;
	pthread_mutex_lock(&log_.lock);
	t->status = job->status;
	snprintf(t->message, sizeof t->message, "%s", job->err.message);
	log_.done++;
	pthread_cond_broadcast(&log_.changed);
	pthread_mutex_unlock(&log_.lock);
}

static void job_setup(struct test_job *t, enum job_kind kind, const char *name)
{
	memset(t, 0, sizeof *t);
	t->name = name;
	t->job.kind = kind;
	job_init(&t->job.control);
	t->job.run = run_test_job;
	t->job.done = test_job_done;
	t->job.ctx = t;
}

static void submit_ok(struct worker_pool *p, struct test_job *t)
{
	struct igs_error err = {0};
	int rc = pool_submit(p, &t->job, &err);
	ck_assert_msg(rc == 0, "submit %s: %d %s", t->name, rc, err.message);
}

/* The test thread's view of the log, under the lock. */
static void wait_started(int n)
{
	pthread_mutex_lock(&log_.lock);
	wait_for(&log_.started, n, "held jobs to start");
	pthread_mutex_unlock(&log_.lock);
}

static void wait_parked(int n)
{
	pthread_mutex_lock(&log_.lock);
	wait_for(&log_.parked, n, "held jobs to reach the gate");
	pthread_mutex_unlock(&log_.lock);
}

static void wait_done(int n)
{
	pthread_mutex_lock(&log_.lock);
	wait_for(&log_.done, n, "done callbacks");
	pthread_mutex_unlock(&log_.lock);
}

static void open_gate(int stage)
{
	pthread_mutex_lock(&log_.lock);
	log_.gate = stage;
	pthread_cond_broadcast(&log_.changed);
	pthread_mutex_unlock(&log_.lock);
}

static void assert_order(const char *want)
{
	pthread_mutex_lock(&log_.lock);
	char got[sizeof log_.order];
	memcpy(got, log_.order, sizeof got);
	pthread_mutex_unlock(&log_.lock);
	ck_assert_msg(!strcmp(got, want), "run order\n  got:      %s\n  expected: %s", got, want);
}

/* ---- the pool over a small model (the jobs never use it) ---- */

static struct service *svc;

static void service_setup(void)
{
	const char *fixtures = getenv("IGSERVE_FIXTURES");
	ck_assert_msg(fixtures != NULL, "IGSERVE_FIXTURES is not set");
	static char path[4096];
	snprintf(path, sizeof path, "%s/engine/tv_basic.safetensors", fixtures);
	struct service_config cfg = {
	    .model_path = path, .input_size = 64, .max_batch = 1, .memory_budget = 64u << 20};
	struct igs_error err = {0};
	ck_assert_msg(service_open(&svc, &cfg, &err) == 0, "%s", err.message);
}

static void service_teardown(void)
{
	service_close(&svc);
}

static struct worker_pool *pool_with(int workers, int predict_queue, int attribute_queue,
                                     bool interleave)
{
	struct worker_pool_config cfg = {
	    .workers = workers,
	    .queue_size = {[JOB_PREDICT] = predict_queue, [JOB_ATTRIBUTE] = attribute_queue},
	    .interleave_predictions = interleave,
	};
	struct worker_pool *p = NULL;
	struct igs_error err = {0};
	ck_assert_msg(pool_open(&p, svc, &cfg, &err) == 0, "%s", err.message);
	ck_assert_int_eq(pool_workers(p), workers);
	return p;
}

/* One worker busy with a held job named B (of `kind`), so what is submitted next waits. */
static void hold_worker(struct worker_pool *p, struct test_job *blocker, enum job_kind kind)
{
	job_setup(blocker, kind, "B");
	blocker->hold = true;
	submit_ok(p, blocker);
	wait_started(1);
}

/* ---- tests ---- */

START_TEST(test_bad_config_refused)
{
	struct igs_error err = {0};
	struct worker_pool *p = (struct worker_pool *)1;
	struct worker_pool_config cfg = {.workers = 0, .queue_size = {1, 1}};
	ck_assert_int_eq(pool_open(&p, svc, &cfg, &err), IGS_ERR_BAD_OPTION);
	ck_assert_ptr_null(p);
	ck_assert_ptr_nonnull(strstr(err.message, "worker pool"));
	cfg = (struct worker_pool_config){.workers = 1, .queue_size = {1, 0}};
	ck_assert_int_eq(pool_open(&p, svc, &cfg, &err), IGS_ERR_BAD_OPTION);
	cfg = (struct worker_pool_config){.workers = 1, .queue_size = {0, 1}};
	ck_assert_int_eq(pool_open(&p, svc, &cfg, &err), IGS_ERR_BAD_OPTION);
	/* an incomplete job is refused, not queued */
	p = pool_with(1, 1, 1, false);
	struct test_job t;
	job_setup(&t, JOB_PREDICT, "X");
	t.job.run = NULL;
	ck_assert_int_eq(pool_submit(p, &t.job, &err), IGS_ERR_INTERNAL);
	job_setup(&t, (enum job_kind)7, "X");
	ck_assert_int_eq(pool_submit(p, &t.job, &err), IGS_ERR_INTERNAL);
	ck_assert_int_eq(pool_queue_depth(p, JOB_PREDICT), 0);
	pool_close(&p);
	ck_assert_ptr_null(p);
	ck_assert(!t.ran);
}
END_TEST

START_TEST(test_predictions_before_attributions)
{
	struct worker_pool *p = pool_with(1, 16, 16, false);
	struct test_job b, a1, a2, p1, p2, p3;
	hold_worker(p, &b, JOB_PREDICT);
	job_setup(&a1, JOB_ATTRIBUTE, "A1");
	job_setup(&p1, JOB_PREDICT, "P1");
	job_setup(&a2, JOB_ATTRIBUTE, "A2");
	job_setup(&p2, JOB_PREDICT, "P2");
	job_setup(&p3, JOB_PREDICT, "P3");
	submit_ok(p, &a1);
	submit_ok(p, &p1);
	submit_ok(p, &a2);
	submit_ok(p, &p2);
	submit_ok(p, &p3);
	open_gate(1);
	wait_done(6);
	/* each queue first in, first out; predictions first */
	assert_order("B P1 P2 P3 A1 A2");
	ck_assert_int_eq(a1.status, 0);
	ck_assert_int_eq(p3.status, 0);
	pool_close(&p);
}
END_TEST

/* After 4 predictions in a row while an attribution waits, the attribution goes. */
START_TEST(test_four_in_a_row_then_attribution)
{
	struct worker_pool *p = pool_with(1, 16, 16, false);
	struct test_job b, a[2], pr[10];
	static const char *const names[10] = {"P1", "P2", "P3", "P4", "P5",
	                                      "P6", "P7", "P8", "P9", "P10"};
	hold_worker(p, &b, JOB_PREDICT);
	job_setup(&a[0], JOB_ATTRIBUTE, "A1");
	job_setup(&a[1], JOB_ATTRIBUTE, "A2");
	submit_ok(p, &a[0]);
	submit_ok(p, &a[1]);
	for (int i = 0; i < 10; i++) {
		job_setup(&pr[i], JOB_PREDICT, names[i]);
		submit_ok(p, &pr[i]);
	}
	ck_assert_int_eq(pool_queue_depth(p, JOB_PREDICT), 10);
	ck_assert_int_eq(pool_queue_depth(p, JOB_ATTRIBUTE), 2);
	ck_assert_int_eq(pool_running(p), 1);
	open_gate(1);
	wait_done(13);
	assert_order("B P1 P2 P3 P4 A1 P5 P6 P7 P8 A2 P9 P10");
	ck_assert_int_eq(pool_queue_depth(p, JOB_PREDICT), 0);
	ck_assert_int_eq(pool_queue_depth(p, JOB_ATTRIBUTE), 0);
	pool_close(&p);
}
END_TEST

/* The streak counts only predictions taken while an attribution waited. */
START_TEST(test_streak_counts_only_while_attribution_waits)
{
	struct worker_pool *p = pool_with(1, 16, 16, false);
	struct test_job b1, b2, a1, early[3], late[5];
	static const char *const early_names[3] = {"E1", "E2", "E3"};
	static const char *const late_names[5] = {"P1", "P2", "P3", "P4", "P5"};
	hold_worker(p, &b1, JOB_PREDICT);
	for (int i = 0; i < 3; i++) {
		job_setup(&early[i], JOB_PREDICT, early_names[i]);
		submit_ok(p, &early[i]);
	}
	open_gate(1);
	wait_done(4);
	/* the same again, now with an attribution waiting */
	pthread_mutex_lock(&log_.lock);
	log_.gate = 0;
	pthread_mutex_unlock(&log_.lock);
	job_setup(&b2, JOB_PREDICT, "B2");
	b2.hold = true;
	submit_ok(p, &b2);
	wait_started(2);
	job_setup(&a1, JOB_ATTRIBUTE, "A1");
	submit_ok(p, &a1);
	for (int i = 0; i < 5; i++) {
		job_setup(&late[i], JOB_PREDICT, late_names[i]);
		submit_ok(p, &late[i]);
	}
	open_gate(1);
	wait_done(11);
	assert_order("B E1 E2 E3 B2 P1 P2 P3 P4 A1 P5");
	pool_close(&p);
}
END_TEST

/* One worker running an attribution runs the waiting predictions between its chunks. */
START_TEST(test_predictions_between_chunks)
{
	struct worker_pool *p = pool_with(1, 16, 16, true);
	struct test_job a, p1, p2, p3;
	job_setup(&a, JOB_ATTRIBUTE, "A");
	a.hold = true;
	a.chunks = 3;
	submit_ok(p, &a);
	wait_started(1);
	job_setup(&p1, JOB_PREDICT, "P1");
	job_setup(&p2, JOB_PREDICT, "P2");
	submit_ok(p, &p1);
	submit_ok(p, &p2);
	open_gate(1); /* chunk 0, then the two predictions */
	wait_done(2);
	wait_parked(2); /* back from its yield, held before chunk 1 */
	assert_order("A.0 P1 P2");
	ck_assert_int_eq(pool_running(p), 1);
	job_setup(&p3, JOB_PREDICT, "P3");
	submit_ok(p, &p3);
	open_gate(2); /* chunk 1, then P3 */
	wait_done(3);
	open_gate(3);
	wait_done(4);
	assert_order("A.0 P1 P2 A.1 P3 A.2");
	ck_assert_int_eq(a.status, 0);
	ck_assert_int_eq(p3.status, 0);
	pool_close(&p);
}
END_TEST

/* Without interleaving the attribution runs to its end first. */
START_TEST(test_no_interleaving_when_off)
{
	struct worker_pool *p = pool_with(1, 16, 16, false);
	struct test_job a, p1, p2;
	job_setup(&a, JOB_ATTRIBUTE, "A");
	a.hold = true;
	a.chunks = 3;
	submit_ok(p, &a);
	wait_started(1);
	job_setup(&p1, JOB_PREDICT, "P1");
	job_setup(&p2, JOB_PREDICT, "P2");
	submit_ok(p, &p1);
	submit_ok(p, &p2);
	open_gate(3);
	wait_done(3);
	assert_order("A.0 A.1 A.2 P1 P2");
	pool_close(&p);
}
END_TEST

/* With two workers one stays free for predictions: a second attribution waits. */
START_TEST(test_one_worker_kept_for_predictions)
{
	struct worker_pool *p = pool_with(2, 16, 16, true);
	struct test_job a1, a2, p1, p2;
	job_setup(&a1, JOB_ATTRIBUTE, "A1");
	a1.hold = true;
	a1.chunks = 2;
	submit_ok(p, &a1);
	wait_started(1);
	job_setup(&a2, JOB_ATTRIBUTE, "A2");
	job_setup(&p1, JOB_PREDICT, "P1");
	job_setup(&p2, JOB_PREDICT, "P2");
	submit_ok(p, &a2);
	submit_ok(p, &p1);
	submit_ok(p, &p2);
	wait_done(2); /* the free worker ran both predictions... */
	assert_order("P1 P2");
	ck_assert(!a2.ran); /* ...but not the second attribution */
	ck_assert_int_eq(pool_queue_depth(p, JOB_ATTRIBUTE), 1);
	ck_assert_int_eq(pool_running(p), 1);
	open_gate(2);
	wait_done(4);
	assert_order("P1 P2 A1.0 A1.1 A2");
	pool_close(&p);
}
END_TEST

START_TEST(test_full_queue_refused)
{
	struct worker_pool *p = pool_with(1, 2, 1, false);
	struct test_job b, p1, p2, p3, a1, a2;
	hold_worker(p, &b, JOB_PREDICT);
	job_setup(&p1, JOB_PREDICT, "P1");
	job_setup(&p2, JOB_PREDICT, "P2");
	job_setup(&p3, JOB_PREDICT, "P3");
	job_setup(&a1, JOB_ATTRIBUTE, "A1");
	job_setup(&a2, JOB_ATTRIBUTE, "A2");
	submit_ok(p, &p1);
	ck_assert_int_eq(pool_queue_depth(p, JOB_PREDICT), 1);
	submit_ok(p, &p2);
	ck_assert_int_eq(pool_queue_depth(p, JOB_PREDICT), 2);
	struct igs_error err = {0};
	ck_assert_int_eq(pool_submit(p, &p3.job, &err), IGS_ERR_BUSY);
	ck_assert_str_eq(err.message, "server: the predict queue is full (2 waiting)");
	/* the other queue has its own room */
	submit_ok(p, &a1);
	ck_assert_int_eq(pool_submit(p, &a2.job, &err), IGS_ERR_BUSY);
	ck_assert_str_eq(err.message, "server: the attribute queue is full (1 waiting)");
	ck_assert_int_eq(pool_queue_depth(p, JOB_PREDICT), 2);
	ck_assert_int_eq(pool_queue_depth(p, JOB_ATTRIBUTE), 1);
	ck_assert_int_eq(pool_running(p), 1);
	int retry = pool_retry_after(p, JOB_PREDICT);
	ck_assert_int_ge(retry, 1);
	ck_assert_int_le(retry, 3600);
	open_gate(1);
	wait_done(4);
	assert_order("B P1 P2 A1");
	ck_assert(!p3.ran && !a2.ran);
	/* room again once the queue drained */
	submit_ok(p, &p3);
	wait_done(5);
	assert_order("B P1 P2 A1 P3");
	pthread_mutex_lock(&log_.lock);
	ck_assert_int_eq(log_.done, 5); /* refused jobs get no done callback */
	pthread_mutex_unlock(&log_.lock);
	pool_close(&p);
}
END_TEST

/* A job cancelled or past its deadline while queued completes without running. */
START_TEST(test_cancelled_and_late_jobs_skipped)
{
	struct worker_pool *p = pool_with(1, 16, 16, false);
	struct test_job b, gone, late, fine;
	hold_worker(p, &b, JOB_PREDICT);
	job_setup(&gone, JOB_PREDICT, "GONE");
	job_setup(&late, JOB_ATTRIBUTE, "LATE");
	job_setup(&fine, JOB_PREDICT, "FINE");
	late.job.control.deadline = igs_now() + 3600; /* not yet past at submit */
	submit_ok(p, &gone);
	submit_ok(p, &late);
	submit_ok(p, &fine);
	atomic_store(&gone.job.control.cancelled, true);
	late.job.control.deadline = igs_now() - 1; /* passed while queued */
	open_gate(1);
	wait_done(4);
	assert_order("B FINE");
	ck_assert(!gone.ran && !late.ran);
	ck_assert_int_eq(gone.status, IGS_ERR_CANCELLED);
	ck_assert_int_eq(late.status, IGS_ERR_DEADLINE);
	ck_assert_ptr_nonnull(strstr(late.message, "deadline"));
	ck_assert_int_eq(fine.status, 0);
	pool_close(&p);
}
END_TEST

static void *close_pool(void *arg)
{
	pool_close(arg);
	return NULL;
}

/* Closing: queued jobs come back refused at once, the running one finishes, nothing new enters. */
START_TEST(test_close_with_queued_jobs)
{
	struct worker_pool *p = pool_with(1, 16, 16, false);
	struct worker_pool *live = p; /* stays valid while the held job keeps close joining */
	struct test_job b, p1, a1, late;
	hold_worker(p, &b, JOB_ATTRIBUTE);
	job_setup(&p1, JOB_PREDICT, "P1");
	job_setup(&a1, JOB_ATTRIBUTE, "A1");
	submit_ok(p, &p1);
	submit_ok(p, &a1);
	pthread_t closer;
	ck_assert_int_eq(pthread_create(&closer, NULL, close_pool, &p), 0);
	wait_done(2); /* the two queued jobs, handed back */
	ck_assert(!p1.ran && !a1.ran);
	ck_assert_int_eq(p1.status, IGS_ERR_NOT_READY);
	ck_assert_int_eq(a1.status, IGS_ERR_NOT_READY);
	ck_assert_ptr_nonnull(strstr(p1.message, "shutting down"));
	job_setup(&late, JOB_PREDICT, "LATE");
	struct igs_error err = {0};
	ck_assert_int_eq(pool_submit(live, &late.job, &err), IGS_ERR_NOT_READY);
	ck_assert_int_eq(pool_queue_depth(live, JOB_PREDICT), 0);
	ck_assert_int_eq(pool_queue_depth(live, JOB_ATTRIBUTE), 0);
	open_gate(1);
	ck_assert_int_eq(pthread_join(closer, NULL), 0);
	ck_assert_ptr_null(p);
	assert_order("B");
	ck_assert_int_eq(b.status, 0);
	pthread_mutex_lock(&log_.lock);
	ck_assert_int_eq(log_.done, 3);
	pthread_mutex_unlock(&log_.lock);
	ck_assert(!late.ran);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, service_setup, service_teardown);
	tcase_set_timeout(tc, 2 * HANG_GUARD_S);
	tcase_add_test(tc, test_bad_config_refused);
	tcase_add_test(tc, test_predictions_before_attributions);
	tcase_add_test(tc, test_four_in_a_row_then_attribution);
	tcase_add_test(tc, test_streak_counts_only_while_attribution_waits);
	tcase_add_test(tc, test_predictions_between_chunks);
	tcase_add_test(tc, test_no_interleaving_when_off);
	tcase_add_test(tc, test_one_worker_kept_for_predictions);
	tcase_add_test(tc, test_full_queue_refused);
	tcase_add_test(tc, test_cancelled_and_late_jobs_skipped);
	tcase_add_test(tc, test_close_with_queued_jobs);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
