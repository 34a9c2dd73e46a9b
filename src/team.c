/*
 * team.c - persistent helper threads and a spinning barrier (see team.h).
 *
 * Between passes helpers sleep on a condition variable; inside a pass they
 * meet at a sense-reversing barrier that spins (a layer takes micro- to
 * milliseconds, far less than a futex round trip would cost a hundred times
 * per pass) and yields the core after a while, so an oversubscribed machine
 * still makes progress.
 */
#include "igserve/team.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#define TEAM_MAX 64
#define SPINS_BEFORE_YIELD 4000

struct team {
	int size;
	pthread_t threads[TEAM_MAX];
	pthread_mutex_t lock;
	pthread_cond_t wake, done;
	unsigned generation;          /* bumped for each pass (under lock) */
	int finished;                 /* helpers done with this pass (under lock) */
	bool stop;
	void (*fn)(void *arg, const struct par *p);
	void *arg;
	/* barrier */
	atomic_int arrived;
	atomic_uint phase;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

void par_range(const struct par *p, int total, int *lo, int *hi)
{
	if (!p || p->nth <= 1) {
		*lo = 0;
		*hi = total;
		return;
	}
	long long a = (long long)total * p->tid / p->nth, b = (long long)total * (p->tid + 1) / p->nth;
	*lo = (int)a;
	*hi = (int)b;
}

void par_range_size(const struct par *p, size_t total, size_t *lo, size_t *hi)
{
	if (!p || p->nth <= 1) {
		*lo = 0;
		*hi = total;
		return;
	}
	/* total is at most a few hundred million floats: no overflow. */
	*lo = total * (size_t)p->tid / (size_t)p->nth;
	*hi = total * (size_t)(p->tid + 1) / (size_t)p->nth;
}

void par_sync(const struct par *p)
{
	if (!p || p->nth <= 1)
		return;
	struct team *t = p->team;
	unsigned phase = atomic_load_explicit(&t->phase, memory_order_acquire);
	if (atomic_fetch_add_explicit(&t->arrived, 1, memory_order_acq_rel) == p->nth - 1) {
		atomic_store_explicit(&t->arrived, 0, memory_order_relaxed);
		atomic_fetch_add_explicit(&t->phase, 1, memory_order_release);
		return;
	}
	for (int spins = 0; atomic_load_explicit(&t->phase, memory_order_acquire) == phase; spins++) {
		if (spins < SPINS_BEFORE_YIELD)
			cpu_relax();
		else
			sched_yield();
	}
}

static void *helper_main(void *arg)
{
	struct team *t = ((struct par *)arg)->team;
	struct par me = *(struct par *)arg;
	free(arg);
	unsigned seen = 0;
	for (;;) {
		pthread_mutex_lock(&t->lock);
		while (t->generation == seen && !t->stop)
			pthread_cond_wait(&t->wake, &t->lock);
		if (t->stop) {
			pthread_mutex_unlock(&t->lock);
			return NULL;
		}
		seen = t->generation;
		void (*fn)(void *, const struct par *) = t->fn;
		void *fn_arg = t->arg;
		pthread_mutex_unlock(&t->lock);

		fn(fn_arg, &me);

		pthread_mutex_lock(&t->lock);
		if (++t->finished == t->size - 1)
			pthread_cond_signal(&t->done);
		pthread_mutex_unlock(&t->lock);
	}
}

int team_create(struct team **out, int threads, struct igs_error *err)
{
	*out = NULL;
	if (threads < 1 || threads > TEAM_MAX)
		return igs_fail(err, IGS_ERR_BAD_OPTION, "threads must be 1..%d, got %d", TEAM_MAX,
		                threads);
	struct team *t = calloc(1, sizeof *t);
	if (!t)
		return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->wake, NULL);
	pthread_cond_init(&t->done, NULL);
	t->size = 1;
	for (int i = 1; i < threads; i++) {
		struct par *p = malloc(sizeof *p);
		if (!p) {
			team_free(&t);
			return igs_fail(err, IGS_ERR_NOMEM, "out of memory");
		}
		*p = (struct par){.tid = i, .nth = threads, .team = t};
		if (pthread_create(&t->threads[i], NULL, helper_main, p) != 0) {
			free(p);
			team_free(&t);
			return igs_fail(err, IGS_ERR_NOMEM, "cannot start a compute thread");
		}
		t->size++;
	}
	*out = t;
	return 0;
}

void team_free(struct team **tp)
{
	struct team *t = *tp;
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->wake);
	pthread_mutex_unlock(&t->lock);
	for (int i = 1; i < t->size; i++)
		pthread_join(t->threads[i], NULL);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->wake);
	pthread_cond_destroy(&t->done);
	free(t);
	*tp = NULL;
}

int team_size(const struct team *t)
{
	return t ? t->size : 1;
}

void team_run(struct team *t, void (*fn)(void *arg, const struct par *p), void *arg)
{
	struct par me = {.tid = 0, .nth = t ? t->size : 1, .team = t};
	if (!t || t->size == 1) {
		fn(arg, &me);
		return;
	}
	pthread_mutex_lock(&t->lock);
	t->fn = fn;
	t->arg = arg;
	t->finished = 0;
	t->generation++;
	pthread_cond_broadcast(&t->wake);
	pthread_mutex_unlock(&t->lock);

	fn(arg, &me);

	pthread_mutex_lock(&t->lock);
	while (t->finished < t->size - 1)
		pthread_cond_wait(&t->done, &t->lock);
	pthread_mutex_unlock(&t->lock);
}
