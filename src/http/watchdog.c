/*
 * watchdog.c - notices clients that leave while their job runs.
 *
 * MHD does not watch the socket of a suspended connection, so a client
 * that disconnects while its job runs is only noticed at resume.  The
 * watchdog peeks at those sockets every 100 ms and sets the job's
 * `cancelled` flag, which the attribution loop checks between chunks; and
 * it sweeps the pool's queues of jobs cancelled or past their deadline.
 */
#include <errno.h>
#include <stdlib.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received */
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "server_internal.h"

#define WATCH_PERIOD_S 0.1

/* TCP_CLOSE of the kernel's tcp_states.h, which no user header exports
 * beside linux/tcp.h's struct tcp_info. */
enum { TCP_STATE_CLOSE = 7 };

/* The socket's TCP_INFO; false when it cannot be read. */
static bool tcp_info_of(int fd, struct tcp_info *ti)
{
	socklen_t len = sizeof *ti;
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) == 0;
}

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

/* What a peek at a watched socket says about its peer. */
enum peer_state { PEER_HERE, PEER_EOF, PEER_GONE };

static enum peer_state peer_state(int fd)
{
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return PEER_HERE;
	if (n == 0) {
		/* After the probe, a peer that had closed answers with a reset,
		 * which leaves the socket closed. */
		struct tcp_info ti;
		if (tcp_info_of(fd, &ti) && ti.tcpi_state == TCP_STATE_CLOSE)
			return PEER_GONE;
		return PEER_EOF;
	}
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? PEER_HERE : PEER_GONE;
}

/*
 * EOF alone does not say the client has gone: a client may shut down its
 * sending side after the request (shutdown(SHUT_WR)) and still wait for
 * the answer.  A closed socket and a half-closed one look the same until
 * something is sent, so the first EOF sends an interim "100 Continue"
 * (every HTTP/1.1 client must accept and skip 1xx answers): a client that
 * has closed resets the connection, one that has half-closed reads on.
 * The probe is written only while the connection is suspended, under its
 * lock, so it cannot mix with libmicrohttpd's writes (the answer comes
 * after the resume).  Streams (SSE) are not probed: their next event
 * shows libmicrohttpd a closed peer; HTTP/1.0 clients, which must not get
 * 1xx answers, are taken for gone at EOF as before.
 * Called with srv->lock held.
 */
static void check_peer(struct conn *c)
{
	if (c->fd < 0 || atomic_load(&c->job.control.cancelled))
		return;
	enum peer_state st = peer_state(c->fd);
	if (st == PEER_EOF && c->http10)
		st = PEER_GONE;
	if (st == PEER_EOF && !c->sse && !c->probed) {
		static const char probe[] = "HTTP/1.1 100 Continue\r\n\r\n";
		pthread_mutex_lock(&c->lock);
		if (c->suspended && !c->job_done) {
			c->probed = true;
			if (send(c->fd, probe, sizeof probe - 1, MSG_DONTWAIT | MSG_NOSIGNAL) !=
			    (ssize_t)(sizeof probe - 1))
				st = PEER_GONE;
		}
		pthread_mutex_unlock(&c->lock);
	}
	if (st == PEER_GONE)
		atomic_store(&c->job.control.cancelled, true);
}

/* ---- the header timeout ---- */

void watchdog_on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                            enum MHD_ConnectionNotificationCode toe)
{
	struct server *srv = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		struct conn_link *l = calloc(1, sizeof *l);
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (!l)
			return; /* not timed; the idle timeout still applies */
		l->fd = ci ? ci->connect_fd : -1;
		l->since = igs_now();
		pthread_mutex_lock(&srv->lock);
		l->next = srv->links;
		if (srv->links)
			srv->links->prev = l;
		srv->links = l;
		pthread_mutex_unlock(&srv->lock);
		*socket_context = l;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
		/* MHD closes the socket after this call: while a link is in the
		 * list (under srv->lock) its fd is the connection's. */
		struct conn_link *l = *socket_context;
		pthread_mutex_lock(&srv->lock);
		if (l->prev)
			l->prev->next = l->next;
		else
			srv->links = l->next;
		if (l->next)
			l->next->prev = l->prev;
		pthread_mutex_unlock(&srv->lock);
		*socket_context = NULL;
		free(l);
	}
}

static void mark_request(struct server *srv, struct MHD_Connection *mc, bool started)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_link *l = ci ? ci->socket_context : NULL;
	if (!l)
		return;
	pthread_mutex_lock(&srv->lock);
	l->in_request = started;
	l->since = igs_now();
	pthread_mutex_unlock(&srv->lock);
}

void watchdog_request_started(struct server *srv, struct MHD_Connection *mc)
{
	mark_request(srv, mc, true);
}

void watchdog_request_finished(struct server *srv, struct MHD_Connection *mc)
{
	mark_request(srv, mc, false);
}

/* Connections shut down per round, fewer than the 128 events
 * libmicrohttpd 0.9.75 takes from one epoll_wait (see below). */
#define CUTS_PER_ROUND 64

/*
 * Connections without a request that should go:
 *   - headers that take longer than --header-timeout (sent slowly, a byte
 *     at a time, which the idle timeout never sees as idle);
 *   - peers that closed before sending anything (EOF, no byte received).
 * shutdown() wakes libmicrohttpd, which reads EOF and closes them.  The
 * second case closes half-dead connections promptly whatever the event
 * loop makes of them (libmicrohttpd 0.9.75's epoll loop could sleep on
 * 128 of them for --idle-timeout: see server.c); a round cuts fewer than
 * the 128 events that loop takes at once.
 * Called with srv->lock held.
 */
static void cut_dead_and_slow(struct server *srv, double now)
{
	const double limit = srv->cfg.header_timeout_s;
	int cuts = 0;
	for (struct conn_link *l = srv->links; l && cuts < CUTS_PER_ROUND; l = l->next) {
		if (l->in_request || l->cut || l->fd < 0)
			continue;
		bool cut = limit > 0 && now - l->since > limit;
		if (!cut && now - l->since > WATCH_PERIOD_S) {
			/* EOF, and never a byte: nothing was asked (a request whose
			 * bytes libmicrohttpd has read but not handed over yet has
			 * bytes received) */
			char b;
			struct tcp_info ti;
			cut = recv(l->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0 &&
			      tcp_info_of(l->fd, &ti) && ti.tcpi_bytes_received == 0;
		}
		if (cut) {
			l->cut = true;
			shutdown(l->fd, SHUT_RDWR);
			cuts++;
		}
	}
}

void *watchdog_main(void *arg)
{
	struct server *srv = arg;
	pthread_mutex_lock(&srv->lock);
	while (!srv->stopping) {
		for (struct conn *c = srv->watch_head; c; c = c->wnext)
			check_peer(c);
		cut_dead_and_slow(srv, igs_now());
		/* Queued jobs of departed clients, or past their deadline, leave
		 * their queue now (their done callbacks take srv->lock). */
		pthread_mutex_unlock(&srv->lock);
		pool_sweep(srv->pool);
		pthread_mutex_lock(&srv->lock);
		if (srv->stopping)
			break;
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
