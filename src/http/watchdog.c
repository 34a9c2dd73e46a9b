/*
 * watchdog.c - notices clients that leave while their job runs.
 *
 * MHD does not watch the socket of a suspended connection, so a client
 * that disconnects while its job runs is only noticed at resume.  The
 * watchdog peeks at those sockets every 100 ms and sets the job's
 * `cancelled` flag, which the attribution loop checks between chunks.
 */
#include <errno.h>
#include <sys/socket.h>
#include <time.h>

#include "server_internal.h"

#define WATCH_PERIOD_S 0.1

void watchdog_add(struct conn *c)
{
	struct server *srv = c->srv;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
	pthread_mutex_lock(&srv->lock);
	c->fd = ci ? ci->connect_fd : -1;
	c->wprev = NULL;
	c->wnext = srv->watch_head;
	if (srv->watch_head)
		srv->watch_head->wprev = c;
	srv->watch_head = c;
	c->watched = true;
	pthread_mutex_unlock(&srv->lock);
}

void watchdog_remove(struct conn *c)
{
	struct server *srv = c->srv;
	pthread_mutex_lock(&srv->lock);
	if (c->watched) {
		if (c->wprev)
			c->wprev->wnext = c->wnext;
		else
			srv->watch_head = c->wnext;
		if (c->wnext)
			c->wnext->wprev = c->wprev;
		c->watched = false;
	}
	pthread_mutex_unlock(&srv->lock);
}

/* A peer that closed or reset its end: recv sees EOF or an error. */
static bool peer_gone(int fd)
{
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return false;
	if (n == 0)
		return true;
	return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

void *watchdog_main(void *arg)
{
	struct server *srv = arg;
	pthread_mutex_lock(&srv->lock);
	while (!srv->stopping) {
		for (struct conn *c = srv->watch_head; c; c = c->wnext)
			if (c->fd >= 0 && !atomic_load(&c->job.control.cancelled) &&
			    peer_gone(c->fd))
				atomic_store(&c->job.control.cancelled, true);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(WATCH_PERIOD_S * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&srv->changed, &srv->lock, &ts);
	}
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}
